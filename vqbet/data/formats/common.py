"""What every reader shares: picking keys (naming the ones that exist), checking arrays, and
importing optional dependencies with an error that says which extra to install."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def optional(module: str, extra: str) -> Any:
    """Import `module`, or fail saying which `pip install "vqbet[extra]"` brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f'reading this format needs the {module.split(".")[0]!r} package: pip install "vqbet[{extra}]"'
        ) from None


def pick(
    requested: Sequence[str] | str | None, default: Sequence[str], available: Sequence[str], where: str
) -> list[str]:
    """The keys to read: `requested` (or `default`), each checked against `available`."""
    keys = [requested] if isinstance(requested, str) else list(requested or default)
    if not keys:
        raise ValueError(f"{where}: no keys to read; available keys: {sorted(available)}")
    missing = [k for k in keys if k not in available]
    if missing:
        raise ValueError(f"{where}: key(s) {missing} not found; available keys: {sorted(available)}")
    return keys


ImageKeys = Mapping[str, str] | Sequence[str] | str | None
"""Which cameras to read: one key (the camera "image"), several keys (each camera named by its
key), or {camera name: key} (e.g. names an env's cameras use: {"top": "observation.images.top"})."""


def camera_keys(image_keys: ImageKeys, available: Sequence[str], where: str) -> dict[str, str]:
    """{camera name: key in the source} from `image_keys` (see `ImageKeys`), each key checked
    against `available`; {} when no camera is asked for."""
    if not image_keys:
        return {}
    if isinstance(image_keys, str):
        cameras = {"image": image_keys}
    elif isinstance(image_keys, Mapping):
        cameras = {str(name): str(key) for name, key in image_keys.items()}
    else:
        cameras = {str(key): str(key) for key in image_keys}
    bad = [name for name in cameras if name == "state" or "/" in name or not name]
    if bad:
        raise ValueError(f"{where}: camera names must be non-empty, without '/', other than 'state': {bad}")
    pick(list(cameras.values()), [], available, where)
    return cameras


def as_rows(array: Any, where: str, key: str, rows: int | None = None) -> np.ndarray:
    """A (T, F) float32 array from a feature read from a file: (T,) becomes (T, 1); anything not
    float, or not finite, or of the wrong length, is an error naming `where` and `key`."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{where}: '{key}' must hold floating-point values, got {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{where}: '{key}' must be (steps, features), got shape {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise ValueError(f"{where}: '{key}' has {array.shape[0]} steps, the actions have {rows}")
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0, 0])
        raise ValueError(f"{where}: '{key}' holds NaN or inf (first at step {row})")
    return array.astype(np.float32, copy=False)


def concat_features(parts: list[np.ndarray]) -> np.ndarray:
    """Several (T, F_i) features side by side, in the order given."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def check_episode_ends(ends: np.ndarray, steps: int, where: str) -> np.ndarray:
    """Exclusive cumulative episode ends: strictly increasing, positive, the last == steps."""
    ends = np.asarray(ends)
    if ends.ndim != 1 or ends.size == 0 or not np.issubdtype(ends.dtype, np.integer):
        raise ValueError(
            f"{where}: episode_ends must be a non-empty 1-D integer array, got {ends.dtype} {ends.shape}"
        )
    if ends[0] <= 0 or (np.diff(ends) <= 0).any() or ends[-1] != steps:
        raise ValueError(
            f"{where}: episode_ends must increase strictly and end at the {steps} steps of the arrays; "
            f"got {ends[:5].tolist()}{'...' if ends.size > 5 else ''} ending at {int(ends[-1])}"
        )
    return ends.astype(np.int64)


class LazyFrames:
    """Images (N, H, W, 3) uint8 stored in several on-disk parts (one per episode, file or video),
    read only when indexed: `frames[indices]` -> (len(indices), H, W, 3). `read(part, local)` reads
    the sorted local indices of one part."""

    def __init__(
        self, parts: list[Any], lengths: Sequence[int], frame_shape: tuple[int, ...], read: Any
    ) -> None:
        self.parts, self.read = parts, read
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), *frame_shape)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every frame, read now (for writing a copy; training reads per index)."""
        frames = self[np.arange(self.shape[0])]
        return frames if dtype is None else frames.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        single = np.isscalar(index)
        wanted = np.arange(self.shape[0])[index] if isinstance(index, slice) else np.atleast_1d(index)
        wanted = np.asarray(wanted, dtype=np.int64) % max(self.shape[0], 1)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=np.uint8)
        part_of = np.searchsorted(self.offsets, wanted, side="right") - 1
        for part in np.unique(part_of):
            rows = np.flatnonzero(part_of == part)
            local = wanted[rows] - self.offsets[part]
            unique, inverse = np.unique(local, return_inverse=True)
            out[rows] = np.asarray(self.read(self.parts[part], unique))[inverse]
        return out[0] if single else out
