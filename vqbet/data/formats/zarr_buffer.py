"""diffusion_policy's zarr ReplayBuffer: `data/<key>` arrays (N, ...) and `meta/episode_ends` (E,)
(exclusive, cumulative), in zarr v2 or v3 stores, a directory or a .zip. Cameras (e.g. `data/img`,
(N, H, W, 3) uint8) stay in the store and are read per index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqbet.data.episodes import EpisodeData
from vqbet.data.formats.common import (
    ImageKeys,
    LazyFrames,
    as_rows,
    camera_keys,
    check_episode_ends,
    concat_features,
    optional,
    pick,
)


def open_zarr(path: str | os.PathLike) -> Any:
    """The root group of a zarr store (v2 or v3; a directory or a .zip), read-only."""
    zarr = optional("zarr", "zarr")
    path = Path(path)
    store = zarr.storage.ZipStore(str(path), mode="r") if path.suffix == ".zip" else str(path)
    try:
        return zarr.open_group(store=store, mode="r")
    except Exception as err:  # zarr raises several types for "not a zarr group here"
        raise ValueError(f"{path}: not a readable zarr group ({type(err).__name__}: {err})") from None


def _read_frames(array: Any, local: np.ndarray) -> np.ndarray:
    return array.get_orthogonal_selection((local,))


def read_zarr(
    path: str | os.PathLike,
    *,
    obs_keys: Sequence[str] | str | None = None,
    action_key: str | None = None,
    image_keys: ImageKeys = None,
) -> EpisodeData:
    """Read a ReplayBuffer. Defaults: observation "state", action "action"."""
    where = str(path)
    root = open_zarr(path)
    for group in ("data", "meta"):
        if group not in root:
            raise ValueError(
                f"{where}: no '{group}' group: not a diffusion_policy replay buffer (has {sorted(root)})"
            )
    data, meta = root["data"], root["meta"]
    keys = list(data.array_keys())
    if "episode_ends" not in meta:
        raise ValueError(f"{where}: meta/episode_ends is missing (meta has {sorted(meta)})")
    action_name = pick(action_key, ["action"], keys, f"{where}: data")[0]
    obs_names = pick(obs_keys, ["state"] if "state" in keys else [], keys, f"{where}: data")
    action = as_rows(data[action_name][:], where, f"data/{action_name}")
    obs = concat_features([as_rows(data[k][:], where, f"data/{k}", len(action)) for k in obs_names])
    ends = check_episode_ends(meta["episode_ends"][:], len(action), f"{where}: meta")
    attrs = {"source_format": "zarr", "obs_keys": obs_names, "action_key": action_name}
    result = EpisodeData(obs=obs, action=action, episode_ends=ends, attrs=attrs, source=where)
    cameras = camera_keys(image_keys, keys, f"{where}: data")
    for name, key in cameras.items():
        image = data[key]
        if image.shape[0] != len(action) or len(image.shape) != 4 or image.shape[-1] != 3:
            raise ValueError(f"{where}: data/{key} must be ({len(action)}, H, W, 3), got {image.shape}")
        result.images[name] = LazyFrames([image], [len(action)], tuple(image.shape[1:]), _read_frames)
    if cameras:
        result.attrs["image_keys"] = cameras
    return result
