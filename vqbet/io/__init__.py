"""Files: atomic writes, checkpoint folders (JSON + safetensors, never pickle) and the run folder's
layout."""
