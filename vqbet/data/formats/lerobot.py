"""LeRobotDataset v3.0 and v2.1, read with pyarrow alone (no `lerobot` install).

`meta/info.json` gives the version, fps, features and path templates. Frames are parquet rows with
vector features (fixed-size lists such as `observation.state`, `action`) and `episode_index`,
`frame_index`, `index`; v3.0 packs many episodes per `data/chunk-XXX/file-XXX.parquet`, v2.1 has
one `data/chunk-XXX/episode_XXXXXX.parquet` per episode. A camera (a "video" feature) is decoded
from its mp4 only when asked for, and then only the frames indexed (vqbet.data.formats.video), at
the episode's `from_timestamp` (v3.0) + its first `timestamp` + frame_index / fps. The metadata is
checked against the data before any video is opened (vqbet.data.formats.lerobot_checks), and each
`timestamp` is within 1e-4 s of first timestamp + frame_index / fps: these are the frames LeRobot
decodes at `from_timestamp` + `timestamp`.
"""

from __future__ import annotations

import json
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
    concat_features,
    optional,
    pick,
)
from vqbet.data.formats.lerobot_checks import check_episodes, check_fps, check_timestamps, read_episode_meta

VERSIONS = ("v2.0", "v2.1", "v3.0")
ENV_STATE_KEY = "observation.environment_state"
"""LeRobot's name for the simulator's object state (e.g. lerobot/pusht's T keypoints): read as, and
written from, EpisodeData.env_state, a training target that is never a policy input."""


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json, checked for the keys this reader needs."""
    file = root / "meta" / "info.json"
    if not file.is_file():
        raise FileNotFoundError(f"{root}: no meta/info.json: not a LeRobotDataset")
    try:
        info = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    missing = [k for k in ("codebase_version", "fps", "features", "data_path") if k not in info]
    if missing:
        raise ValueError(f"{file}: missing {missing}")
    if info["codebase_version"] not in VERSIONS:
        raise ValueError(
            f"{file}: codebase_version {info['codebase_version']!r}; this reader knows {VERSIONS}"
        )
    check_fps(info, file)
    return info


def column(table: Any, key: str, where: str) -> np.ndarray:
    """A feature column as (rows, F): fixed-size or equal-length lists flattened, scalars (rows, 1)."""
    pa = optional("pyarrow", "lerobot")
    values = table.column(key).combine_chunks()
    if (
        pa.types.is_fixed_size_list(values.type)
        or pa.types.is_list(values.type)
        or pa.types.is_large_list(values.type)
    ):
        lengths = np.asarray(values.value_lengths()) if not pa.types.is_fixed_size_list(values.type) else None
        if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
            raise ValueError(
                f"{where}: '{key}' holds lists of different lengths ({sorted(set(lengths.tolist()))[:5]})"
            )
        flat = values.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(values), -1)
    return values.to_numpy(zero_copy_only=False).reshape(len(values), 1)


VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp")
"""A v3.0 camera's columns in meta/episodes, each as `videos/<key>/<column>`."""


def _episode_videos(
    root: Path,
    info: dict[str, Any],
    key: str,
    episodes: list[int],
    first: np.ndarray,
    meta: dict[str, Any] | None,
) -> list[tuple[str, float, float]]:
    """(video path, time of the episode's frame 0 in it, fps) of each episode's frames of camera
    `key`: the episode's `from_timestamp` in v3.0 (from `meta`, read_episode_meta with the camera's
    columns; 0 in v2.x) + its `first` row timestamp, as LeRobot decodes from_timestamp + timestamp."""
    fps = float(info["fps"])
    out = []
    for e, offset in zip(episodes, first.tolist(), strict=True):
        if info["codebase_version"] != "v3.0":
            chunk = e // int(info.get("chunks_size", 1000))
            path = root / info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=e)
            out.append((str(path), offset, fps))
            continue
        i = meta["row"][e]  # v3.0 always has meta (read_episode_meta)
        chunk, file, start = (meta[f"videos/{key}/{n}"][i] for n in VIDEO_COLUMNS)
        path = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        out.append((str(path), float(start) + offset, fps))
    return out


def pa_concat(tables: list[Any]) -> Any:
    return optional("pyarrow", "lerobot").concat_tables(tables)


def read_lerobot(
    path: str | os.PathLike,
    *,
    obs_keys: Sequence[str] | str | None = None,
    action_key: str | None = None,
    image_keys: ImageKeys = None,
) -> EpisodeData:
    """Read a local LeRobotDataset folder. Defaults: observation "observation.state", action
    "action". Episodes keep their order in the dataset (by the global `index`)."""
    pq = optional("pyarrow.parquet", "lerobot")
    root = Path(path)
    info = read_info(root)
    where = str(root)
    features = info["features"]
    vectors = [k for k, f in features.items() if f.get("dtype") not in ("video", "image", "string")]
    obs_names = pick(obs_keys, ["observation.state"], vectors, f"{where}: features")
    action_name = pick(action_key, ["action"], vectors, f"{where}: features")[0]
    cameras = camera_keys(image_keys, list(features), f"{where}: features")
    for key in cameras.values():
        if features[key].get("dtype") != "video":
            raise ValueError(
                f"{where}: '{key}' is a {features[key].get('dtype')!r} feature; cameras are read from videos"
            )
    pattern = "chunk-*/file-*.parquet" if info["codebase_version"] == "v3.0" else "chunk-*/episode_*.parquet"
    files = sorted((root / "data").glob(pattern))
    if not files:
        raise FileNotFoundError(f"{where}: no data/{pattern}")
    env_state_name = [ENV_STATE_KEY] if ENV_STATE_KEY in vectors and ENV_STATE_KEY not in obs_names else []
    wanted = [*obs_names, action_name, *env_state_name, "episode_index", "frame_index"]
    schemas = [pq.read_schema(file).names for file in files]
    for file, schema in zip(files, schemas, strict=True):
        missing = [k for k in wanted if k not in schema]
        if missing:
            raise ValueError(f"{file}: column(s) {missing} missing; it has {schema}")
    extra = [k for k in ("index", "timestamp") if all(k in schema for schema in schemas)]
    table = pa_concat([pq.read_table(file, columns=wanted + extra) for file in files])
    index = column(table, "index", where)[:, 0].astype(np.int64) if "index" in extra else None
    if index is not None:
        by_index = np.argsort(index, kind="stable")
        table, index = table.take(by_index), index[by_index]
    episode = column(table, "episode_index", where)[:, 0].astype(np.int64)
    frame = column(table, "frame_index", where)[:, 0].astype(np.int64)
    starts = np.flatnonzero(np.diff(episode, prepend=episode[:1] - 1) != 0)
    order = episode[starts]
    if len(set(order.tolist())) != len(order):
        raise ValueError(f"{where}: the rows of an episode are not contiguous (episode_index interleaves)")
    ends = np.append(starts[1:], len(episode)).astype(np.int64)
    expected = np.arange(len(episode)) - np.repeat(starts, ends - starts)
    if not np.array_equal(frame, expected):
        bad = int(episode[np.flatnonzero(frame != expected)[0]])
        raise ValueError(
            f"{where}: episode {bad}: frame_index is not 0, 1, ... (missing or reordered frames)"
        )
    video_columns = tuple(
        dict.fromkeys(f"videos/{key}/{n}" for key in cameras.values() for n in VIDEO_COLUMNS)
    )
    meta = read_episode_meta(root, info, video_columns if info["codebase_version"] == "v3.0" else ())
    check_episodes(root, info, meta, order, starts, ends, index)
    first = np.zeros(len(order))
    if "timestamp" in extra:
        timestamp = column(table, "timestamp", where)[:, 0]
        check_timestamps(where, order, starts, ends, timestamp, float(info["fps"]))
        first = timestamp[starts].astype(np.float64)
    action = as_rows(column(table, action_name, where), where, action_name)
    obs = concat_features([as_rows(column(table, k, where), where, k, len(action)) for k in obs_names])
    attrs = {
        "source_format": f"lerobot {info['codebase_version']}",
        "fps": info["fps"],
        "obs_keys": obs_names,
        "action_key": action_name,
        "lerobot_episode_index": order.tolist(),
    }
    env_state = None
    if env_state_name:
        env_state = as_rows(column(table, ENV_STATE_KEY, where), where, ENV_STATE_KEY, len(action))
    data = EpisodeData(
        obs=obs, action=action, episode_ends=ends, attrs=attrs, source=where, env_state=env_state
    )
    if cameras:  # PyAV only when a camera is read
        from vqbet.data.formats.video import frame_size, read_frames
    for name, key in cameras.items():
        parts = _episode_videos(root, info, key, order.tolist(), first, meta)
        missing = [p[0] for p in parts if not Path(p[0]).is_file()]
        if missing:
            raise FileNotFoundError(f"{where}: camera '{key}': video file(s) missing, e.g. {missing[0]}")
        height, width = frame_size(parts[0][0])
        data.images[name] = LazyFrames(parts, (ends - starts).tolist(), (height, width, 3), read_frames)
    if cameras:
        data.attrs["image_keys"] = cameras
    return data
