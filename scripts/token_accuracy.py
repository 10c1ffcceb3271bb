"""Per-position token accuracy and chunk errors of a trained token policy (`ar` or `vqbet`) on its
run's validation episodes (vqbet.evaluation.tokens): where a token policy goes wrong.

    python scripts/token_accuracy.py runs/pusht/ar-fast-seed0
    python scripts/token_accuracy.py runs/pusht/vqbet-fsq-seed1 --checkpoint last --windows 4096 --samples 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vqbet.evaluation.held_out import held_out_windows
from vqbet.evaluation.tokens import token_diagnostics


def diagnose(run: Path, checkpoint: str = "best", windows: int = 1024, samples: int = 10) -> dict:
    """The run folder's checkpoint on the validation episodes its training held out (the same
    dataset, seed and val_fraction as in its config.yaml), sampled at its acting temperature."""
    policy, held_out = held_out_windows(run, checkpoint)
    diagnostics = token_diagnostics(policy, held_out, windows, samples=samples)
    return {"run": str(run), "checkpoint": checkpoint, **diagnostics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint name under checkpoints/")
    parser.add_argument("--windows", type=int, default=1024, help="validation windows drawn")
    parser.add_argument("--samples", type=int, default=10, help="chunks sampled per window")
    args = parser.parse_args()
    try:
        print(json.dumps(diagnose(args.run, args.checkpoint, args.windows, args.samples), indent=1))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"token_accuracy: {err}")


if __name__ == "__main__":
    main()
