"""The native dataset file: one HDF5 file.

Layout (all at the root):
    obs           (N, D) float32   observation of every step, episodes concatenated
    action        (N, A) float32   action taken at that step
    episode_ends  (E,)   int64     exclusive end index of each episode (last == N)
    images/<cam>  (N, H, W, 3) uint8 per camera, optional, one frame per chunk (lzf-compressed),
                  read lazily; a root `image` (files of earlier versions) is the camera "image"
    attributes    metadata: task id, expert, seeds, library versions, success rate, modes, ...
                  (JSON-encoded strings for anything that is not a plain number or string)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vqbet.atomic import clean_stale, temp_prefix
from vqbet.data.episodes import EpisodeData

REQUIRED = ("obs", "action", "episode_ends")


def write_hdf5(path: str | os.PathLike, data: EpisodeData) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder, then a rename."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    tmp = final.with_name(f"{temp_prefix(final)}write")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("obs", data=np.asarray(data.obs, dtype=np.float32))
            f.create_dataset("action", data=np.asarray(data.action, dtype=np.float32))
            f.create_dataset("episode_ends", data=data.episode_ends.astype(np.int64))
            for camera, frames in data.images.items():
                frames = np.asarray(frames, dtype=np.uint8)
                f.create_dataset(
                    f"images/{camera}", data=frames, chunks=(1, *frames.shape[1:]), compression="lzf"
                )
            for key, value in data.attrs.items():
                f.attrs[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value


def _check_dataset(file: Path, key: str, item: Any) -> None:
    """Before reading `key`: an array (not a group) whose declared size the file can hold."""
    if not isinstance(item, h5py.Dataset):
        raise ValueError(
            f"{file}: '{key}' must be an array (an HDF5 dataset), got an HDF5 {type(item).__name__}"
        )
    kind = "i" if key == "episode_ends" else "f"
    if item.dtype.kind not in (kind, "u" if kind == "i" else kind):
        raise ValueError(
            f"{file}: '{key}' must hold {'integers' if kind == 'i' else 'floats'}, got {item.dtype}"
        )
    stored = item.id.get_storage_size()
    # Uncompressed data takes its full size on disk; fewer bytes mean a truncated or forged
    # header (a 2 KB file can declare 400M rows: reading it would allocate gigabytes of fill).
    if item.compression is None and stored < item.nbytes:
        raise ValueError(
            f"{file}: '{key}' declares shape {item.shape} ({item.nbytes:,} bytes) but the file stores "
            f"{stored:,} bytes of it (truncated or corrupt)"
        )
    if item.compression is not None and item.nbytes > 1000 * max(stored, 1) + (1 << 20):
        raise ValueError(
            f"{file}: '{key}' declares {item.nbytes:,} bytes in {stored:,} compressed bytes: "
            "not a plausible array"
        )


def read_hdf5(path: str | os.PathLike, load_images: bool = False) -> EpisodeData:
    """Read a dataset written by `write_hdf5`. Images stay on disk (h5py datasets, read per
    index) unless `load_images`; the file then stays open for as long as the data lives."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"dataset file {file} does not exist")
    try:
        handle = h5py.File(file, "r")
    except OSError as err:
        raise ValueError(f"{file} is not a readable HDF5 file (truncated or another format): {err}") from None
    try:
        missing = [key for key in REQUIRED if key not in handle]
        if missing:
            raise ValueError(f"{file}: missing key(s) {missing}; a vqbet dataset holds {list(REQUIRED)}")
        for key in REQUIRED:
            _check_dataset(file, key, handle[key])
        try:
            obs = handle["obs"][()]
            action = handle["action"][()]
            ends = handle["episode_ends"][()]
        except (OSError, KeyError) as err:
            raise ValueError(f"{file}: could not read the arrays (truncated file?): {err}") from None
        stored = dict(handle["images"]) if isinstance(handle.get("images"), h5py.Group) else {}
        if "image" in handle:
            stored.setdefault("image", handle["image"])
        images = {camera: item[()] if load_images else item for camera, item in stored.items()}
        attrs = {key: _attr(value) for key, value in handle.attrs.items()}
        data = EpisodeData(
            obs=obs, action=action, episode_ends=ends, images=images, attrs=attrs, source=str(file)
        )
    except BaseException:
        handle.close()
        raise
    if not images or load_images:
        handle.close()
    return data
