"""robomimic HDF5: `data/demo_<k>/{actions, obs/<key>}`, demos in numeric order, `mask/<filter>` lists
the demos of a split. Several observation keys are concatenated in the order given; cameras
(`obs/<name>_image`, (T, H, W, 3) uint8) stay on disk and are read per index."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from vqbet.data.episodes import EpisodeData
from vqbet.data.formats.common import ImageKeys, LazyFrames, as_rows, camera_keys, concat_features, pick


def _demo_number(name: str) -> int:
    match = re.fullmatch(r"demo_(\d+)", name)
    return int(match.group(1)) if match else -1


def _read_rows(dataset: h5py.Dataset, local: np.ndarray) -> np.ndarray:
    return dataset[local.tolist()]


def read_robomimic(
    path: str | os.PathLike,
    *,
    obs_keys: Sequence[str] | str | None = None,
    action_key: str | None = None,
    image_keys: ImageKeys = None,
    filter_key: str | None = None,
) -> EpisodeData:
    """Read a robomimic dataset. Default observation: every low-dimensional `obs/` key, sorted by
    name; default action key "actions". `filter_key` picks the demos listed in `mask/<filter_key>`."""
    file = Path(path)
    handle = h5py.File(file, "r")
    try:
        data = _read(handle, str(file), obs_keys, action_key, image_keys, filter_key)
    except BaseException:
        handle.close()
        raise
    if not data.images:
        handle.close()
    else:
        data._handle = handle  # keeps the file open while the frames are read lazily
    return data


def _read(
    handle: h5py.File,
    where: str,
    obs_keys: Sequence[str] | str | None,
    action_key: str | None,
    image_keys: ImageKeys,
    filter_key: str | None,
) -> EpisodeData:
    if "data" not in handle or not isinstance(handle["data"], h5py.Group):
        handle.close()
        raise ValueError(
            f"{where}: no 'data' group: not a robomimic dataset (top-level keys {sorted(handle)})"
        )
    group = handle["data"]
    names = sorted((n for n in group if _demo_number(n) >= 0), key=_demo_number)
    if filter_key is not None:
        masks = handle.get("mask")
        if masks is None or filter_key not in masks:
            known = sorted(masks) if masks is not None else []
            raise ValueError(f"{where}: no mask/{filter_key}; masks in the file: {known}")
        chosen = {v.decode() if isinstance(v, bytes) else str(v) for v in masks[filter_key][()]}
        names = [n for n in names if n in chosen]
    if not names:
        raise ValueError(f"{where}: no demos (data/demo_<k>) to read")
    first = group[names[0]]
    obs_group = first.get("obs", {})
    low_dim = sorted(k for k in obs_group if obs_group[k].ndim <= 2 and obs_group[k].dtype != np.uint8)
    obs_names = pick(obs_keys, low_dim, list(obs_group), f"{where}: data/{names[0]}/obs")
    action_name = pick(action_key, ["actions"], list(first), f"{where}: data/{names[0]}")[0]
    cameras = camera_keys(image_keys, list(obs_group), f"{where}: data/{names[0]}/obs")
    episodes, lengths = [], []
    frames: dict[str, list[h5py.Dataset]] = {name: [] for name in cameras}
    for name in names:
        demo = group[name]
        here = f"{where}: data/{name}"
        actions = as_rows(demo[action_name][()], here, action_name)
        missing = [k for k in obs_names if k not in demo.get("obs", {})]
        if missing:
            raise ValueError(f"{here}: obs key(s) {missing} missing; it has {sorted(demo.get('obs', {}))}")
        obs = concat_features(
            [as_rows(demo["obs"][k][()], here, f"obs/{k}", len(actions)) for k in obs_names]
        )
        episodes.append({"obs": obs, "action": actions})
        lengths.append(len(actions))
        for camera, key in cameras.items():
            if key not in demo["obs"]:
                raise ValueError(f"{here}: camera obs/{key} missing; it has {sorted(demo['obs'])}")
            image = demo["obs"][key]
            if image.shape[0] != len(actions) or image.ndim != 4 or image.shape[-1] != 3:
                raise ValueError(f"{here}: obs/{key} must be ({len(actions)}, H, W, 3), got {image.shape}")
            frames[camera].append(image)
    attrs = {"source_format": "robomimic", "demos": names, "obs_keys": obs_names, "action_key": action_name}
    data = EpisodeData.from_episodes(episodes, attrs=attrs)
    data.source = where
    for camera, parts in frames.items():
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise ValueError(
                f"{where}: camera obs/{cameras[camera]} changes size between demos: {sorted(shapes)}"
            )
        data.images[camera] = LazyFrames(parts, lengths, shapes.pop(), _read_rows)
    if cameras:
        data.attrs["image_keys"] = cameras
    return data
