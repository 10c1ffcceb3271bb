"""`load_dataset(source)`: demonstrations in the formats users bring, as one EpisodeData.

    load_dataset("datasets/pusht.hdf5")                       # vqbet's own HDF5
    load_dataset("lerobot_pusht/", image_keys="observation.image")   # LeRobotDataset v3.0 / v2.1
    load_dataset("aloha/", image_keys={"top": "observation.images.top", "wrist": "observation.images.wrist"})
    load_dataset("low_dim.hdf5", obs_keys=["robot0_eef_pos", "object"], filter_key="train")  # robomimic
    load_dataset("pusht_cchi_v7_replay.zarr", obs_keys="state")      # diffusion_policy ReplayBuffer
    load_dataset("D4RL/kitchen/complete-v2")                  # Minari (id, or its folder)

The format is detected from what is on disk (`format=` forces one). Missing keys are named with the
keys that exist; non-float or non-finite values, ragged episodes and inconsistent episode ends are
errors naming the file and the key. Cameras stay on disk and are read per index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import h5py

from vqbet.data.episodes import EpisodeData
from vqbet.data.formats.common import ImageKeys, camera_keys, pick
from vqbet.data.formats.hdf5 import read_hdf5
from vqbet.data.formats.lerobot import read_lerobot
from vqbet.data.formats.lerobot_export import export_lerobot
from vqbet.data.formats.robomimic import read_robomimic
from vqbet.data.formats.zarr_buffer import read_zarr

FORMATS = ("hdf5", "robomimic", "zarr", "lerobot", "minari")

__all__ = ["FORMATS", "detect_format", "export_lerobot", "load_dataset"]


def detect_format(source: str | os.PathLike) -> str:
    """Which of `FORMATS` `source` is, from what is on disk (a missing path that looks like a
    Minari id, "namespace/name-v0", is Minari's)."""
    path = Path(source)
    if not path.exists():
        if "/" in str(source) and "-v" in str(source) and not Path(source).suffix:
            return "minari"
        raise FileNotFoundError(f"dataset {source} does not exist (nor is it a Minari dataset id)")
    if path.is_dir():
        if (path / "meta" / "info.json").is_file():
            return "lerobot"
        if (path / ".zgroup").is_file() or (path / "zarr.json").is_file():
            return "zarr"
        if (path / "data" / "main_data.hdf5").is_file():
            return "minari"
        raise ValueError(f"{path}: a folder, but not a LeRobotDataset, zarr store or Minari dataset")
    if path.suffix == ".zip":
        return "zarr"
    try:
        with h5py.File(path, "r") as handle:
            if "data" in handle and any(k.startswith("demo_") for k in handle["data"]):
                return "robomimic"
            if "obs" in handle or "episode_ends" in handle:
                return "hdf5"
            keys = sorted(handle)
    except OSError:
        raise ValueError(f"{path}: not an HDF5 file, LeRobotDataset, zarr store or Minari dataset") from None
    raise ValueError(
        f"{path}: an HDF5 file, but neither vqbet's layout nor robomimic's (top-level keys {keys})"
    )


def _read_minari(source: str | os.PathLike, obs_keys: list[str] | None) -> EpisodeData:
    from vqbet.data.formats.minari import read_minari

    path = Path(source)
    if not path.exists():
        return read_minari(str(source), obs_keys=obs_keys)
    file = path / "data" / "metadata.json"
    dataset_id = json.loads(file.read_text()).get("dataset_id") if file.is_file() else None
    if not dataset_id:
        raise ValueError(f"{path}: a Minari dataset folder needs data/metadata.json with its dataset_id")
    return read_minari(dataset_id, root=path.parents[len(dataset_id.split("/")) - 1], obs_keys=obs_keys)


def load_dataset(
    source: str | os.PathLike,
    *,
    format: str | None = None,
    obs_keys: Sequence[str] | str | None = None,
    action_key: str | None = None,
    image_keys: ImageKeys = None,
    filter_key: str | None = None,
) -> EpisodeData:
    """Demonstrations from `source` in any of `FORMATS`. `obs_keys` (concatenated in the order
    given), `action_key` and `image_keys` name what to read; each format has defaults (see its
    reader). Cameras land in `data.images`: one key as the camera "image", a list of keys each
    under its own name, a mapping {camera name: key} under the names given (to match the cameras
    a policy or env uses). `filter_key`: a robomimic mask (e.g. "train")."""
    kind = format or detect_format(source)
    if kind not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {kind!r}")
    keys = dict(obs_keys=obs_keys, action_key=action_key, image_keys=image_keys)
    if kind == "robomimic":
        data = read_robomimic(source, **keys, filter_key=filter_key)
    elif kind == "zarr":
        data = read_zarr(source, **keys)
    elif kind == "lerobot":
        data = read_lerobot(source, **keys)
    elif kind == "minari":
        data = _read_minari(source, [obs_keys] if isinstance(obs_keys, str) else obs_keys)
        pick(action_key, ["action"], ["action"], f"{source} (minari)")
        if image_keys:
            raise ValueError(f"{source}: images from Minari datasets are not supported")
    else:
        data = read_hdf5(source)
        where = f"{source} ({kind})"
        pick(obs_keys, ["obs"], ["obs"], where)
        pick(action_key, ["action"], ["action"], where)
        cameras = camera_keys(image_keys, list(data.images), where)
        if cameras:
            data.images = {name: data.images[key] for name, key in cameras.items()}
    if filter_key is not None and kind != "robomimic":
        raise ValueError(f"filter_key is a robomimic mask; {source} is {kind}")
    data.attrs.setdefault("source_format", kind)
    data.attrs["source"] = str(source)
    return data
