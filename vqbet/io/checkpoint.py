"""Checkpoint folders: `config.json` + `model.safetensors` (+ more JSON/safetensors files).

Writes go to a temporary sibling folder that replaces the old one atomically (vqbet.io.atomic), so a
kill at any instant leaves the old or the new checkpoint under the final name, never a half-written
one and never none. Reads never unpickle: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from vqbet.io.atomic import clean_stale, replace_folder, temp_prefix
from vqbet.io.full_disk import naming_full_disk

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_folder(
    path: str | os.PathLike,
    *,
    json_files: dict[str, dict[str, Any]],
    tensor_files: dict[str, dict[str, Tensor]],
    other_files: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a checkpoint folder atomically: every file lands, or the old folder stays as it was.

    `json_files` maps file names to JSON-serialisable dicts; `tensor_files` maps file names to
    {name: tensor} dicts saved as safetensors (copied to CPU and made contiguous); `other_files`
    maps file names to functions that write that file, given its path.
    """
    final = Path(path)
    with naming_full_disk(final, f"; {final} is as it was before"):
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
        try:
            for name, payload in json_files.items():
                (tmp / name).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            for name, tensors in tensor_files.items():
                plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
                save_file(plain, str(tmp / name))
            for name, write in (other_files or {}).items():
                write(tmp / name)
            _fsync_folder(tmp)
            replace_folder(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _fsync_folder(folder: Path) -> None:
    for child in folder.iterdir():
        with open(child, "rb") as handle:
            os.fsync(handle.fileno())


def read_json(folder: str | os.PathLike, name: str = CONFIG_FILE) -> dict[str, Any]:
    """Read one JSON file of a checkpoint folder, with errors that name the file."""
    file = Path(folder) / name
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (expected a checkpoint's {name})")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data


def read_tensors(folder: str | os.PathLike, name: str = WEIGHTS_FILE) -> dict[str, Tensor]:
    """Read one safetensors file of a checkpoint folder (no pickle), with errors naming the file."""
    file = Path(folder) / name
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (expected a checkpoint's {name})")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{file} is not a readable safetensors file: {err}") from None


def load_state_strict(module: torch.nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Copy `tensors` into `module`, failing with names and shapes on any mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: tensors do not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    module.load_state_dict(tensors, strict=True)
