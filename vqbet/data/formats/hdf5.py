"""The native dataset file: one HDF5 file.

Layout (all at the root):
    obs           (N, D) float32   observation of every step, episodes concatenated
    action        (N, A) float32   action taken at that step
    episode_ends  (E,)   int64     exclusive end index of each episode (last == N)
    env_state     (N, S) float32   optional: the simulator's full state at each step (collections
                  from cameras keep it as a training target; see EpisodeData)
    images/<cam>  (N, H, W, 3) uint8 per camera, optional, one frame per chunk (lzf-compressed),
                  read lazily
    attributes    metadata: task id, expert, seeds, library versions, success rate, modes, ...
                  (JSON-encoded strings for anything that is not a plain number or string)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vqbet.data.episodes import EpisodeData
from vqbet.io.atomic import clean_stale, temp_prefix
from vqbet.io.full_disk import DiskFull, naming_full_disk

REQUIRED = ("obs", "action", "episode_ends")
SPACE_MARGIN = 16 << 20
"""Free bytes kept beyond each episode's raw size. HDF5 (the C library under h5py) cannot recover
from a failed write: the process crashes when the file is released. So the writer stops with
DiskFull before an episode that might not fit, counting its raw (uncompressed) bytes plus this
margin for metadata and the chunk cache's deferred writes."""


class HDF5Writer:
    """Write a dataset file episode by episode, so that frames never all sit in memory (1,000 PushT
    episodes at 96x96 are 9 GB of pixels): every array is chunked and grows as episodes arrive.

        with HDF5Writer(path) as writer:
            writer.append({"obs": (T, D), "action": (T, A), "images": {camera: (T, H, W, 3)},
                           "env_state": (T, S) or absent})
            writer.attrs.update(task_id=...)

    The file appears at `path` only when the block ends without an exception (a temporary file in
    the same folder, then a rename); on an exception, or with no episode appended, nothing is left."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.final = Path(path)
        self.attrs: dict[str, Any] = {}
        self.cameras: list[str] | None = None
        self.episodes = 0
        self._ends: list[int] = []
        self._file: h5py.File | None = None

    def __enter__(self) -> HDF5Writer:
        with naming_full_disk(self.final, self._kept):
            self.final.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(self.final)
            self._tmp = self.final.with_name(f"{temp_prefix(self.final)}write")
            self._check_space(0)
            self._file = h5py.File(self._tmp, "w")
        return self

    @property
    def _kept(self) -> str:
        return f"; nothing was written ({self.final} is as it was before)"

    def _check_space(self, nbytes: int) -> None:
        """DiskFull unless `nbytes` plus SPACE_MARGIN are free where the file is written."""
        free = shutil.disk_usage(self.final.parent).free
        if free < nbytes + SPACE_MARGIN:
            need = (nbytes + SPACE_MARGIN) / 2**20
            raise DiskFull(
                self.final,
                f" for episode {self.episodes} ({need:.0f} MiB wanted, {free / 2**20:.1f} MiB free)"
                f"{self._kept}",
            )

    def append(self, episode: dict[str, Any]) -> None:
        """Add one episode: "obs" (T, D), "action" (T, A) and optionally "images" {camera: (T, H, W,
        3) uint8} and "env_state" (T, S). Every episode needs the cameras, env_state, feature sizes
        and frame shapes of the first."""
        f = self._file
        if f is None:
            raise RuntimeError("HDF5Writer.append outside its `with` block")
        images = episode.get("images") or {}
        arrays = {
            "obs": np.asarray(episode["obs"], dtype=np.float32),
            "action": np.asarray(episode["action"], dtype=np.float32),
            **{f"images/{camera}": np.asarray(frames, dtype=np.uint8) for camera, frames in images.items()},
        }
        if episode.get("env_state") is not None:
            arrays["env_state"] = np.asarray(episode["env_state"], dtype=np.float32)
        if self.cameras is None:
            self.cameras = sorted(images)
            for key, array in arrays.items():
                frames = key.startswith("images/")
                shape = array.shape[1:]
                f.create_dataset(
                    key,
                    (0, *shape),
                    array.dtype,
                    maxshape=(None, *shape),
                    chunks=(1, *shape) if frames else (1024, *shape),
                    compression="lzf" if frames else None,
                )
        if sorted(images) != self.cameras:
            raise ValueError(
                f"{self.final}: episode {self.episodes} has cameras {sorted(images)}, "
                f"the first had {self.cameras}"
            )
        has = "env_state" in arrays
        if has != ("env_state" in f):
            raise ValueError(
                f"{self.final}: episode {self.episodes} {'has' if has else 'lacks'} env_state, the "
                f"first {'did not' if has else 'had it'}"
            )
        steps = len(arrays["obs"])
        start = f["obs"].shape[0]
        self._check_space(sum(array.nbytes for array in arrays.values()))
        for key, array in arrays.items():
            if array.shape != (steps, *f[key].shape[1:]):
                raise ValueError(
                    f"{self.final}: episode {self.episodes} '{key}' has shape {array.shape}, expected "
                    f"{(steps, *f[key].shape[1:])}"
                )
        for key, array in arrays.items():
            f[key].resize(start + steps, axis=0)
            f[key][start:] = array
        self._ends.append(start + steps)
        self.episodes += 1

    @property
    def steps(self) -> int:
        """Steps written so far."""
        return self._ends[-1] if self._ends else 0

    def __exit__(self, kind: type | None, error: BaseException | None, trace: Any) -> None:
        f, self._file = self._file, None
        try:
            if kind is None and not self._ends:
                raise ValueError(f"{self.final}: no episode was written")
            if kind is None:
                self._check_space(0)
                f.create_dataset("episode_ends", data=np.asarray(self._ends, dtype=np.int64))
                for key, value in self.attrs.items():
                    f.attrs[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
            f.close()
            if kind is None:
                os.replace(self._tmp, self.final)
        except BaseException:
            f.close()
            self._tmp.unlink(missing_ok=True)
            raise
        if kind is not None:
            self._tmp.unlink(missing_ok=True)


def write_hdf5(path: str | os.PathLike, data: EpisodeData) -> Path:
    """Write `data` to `path` atomically (see HDF5Writer), one episode at a time: lazily read
    frames (another HDF5 file, decoded video) are never all in memory."""
    with HDF5Writer(path) as writer:
        start = 0
        for end in data.episode_ends.tolist():
            images = {camera: np.asarray(frames[start:end]) for camera, frames in data.images.items()}
            env_state = None if data.env_state is None else data.env_state[start:end]
            episode = {"obs": data.obs[start:end], "action": data.action[start:end], "images": images}
            writer.append({**episode, "env_state": env_state})
            start = end
        writer.attrs.update(data.attrs)
    return writer.final


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
        images = {camera: item[()] if load_images else item for camera, item in stored.items()}
        env_state = None
        if "env_state" in handle:
            _check_dataset(file, "env_state", handle["env_state"])
            env_state = handle["env_state"][()]
        attrs = {key: _attr(value) for key, value in handle.attrs.items()}
        data = EpisodeData(
            obs=obs,
            action=action,
            episode_ends=ends,
            images=images,
            attrs=attrs,
            source=str(file),
            env_state=env_state,
        )
    except BaseException:
        handle.close()
        raise
    if not images or load_images:
        handle.close()
    return data
