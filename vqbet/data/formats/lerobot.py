"""LeRobotDataset v3.0 and v2.1, read with pyarrow alone (no `lerobot` install).

`meta/info.json` gives the version, fps, features and path templates. Frames are parquet rows with
vector features (fixed-size lists such as `observation.state`, `action`) and `episode_index`,
`frame_index`, `index`; v3.0 packs many episodes per `data/chunk-XXX/file-XXX.parquet`, v2.1 has
one `data/chunk-XXX/episode_XXXXXX.parquet` per episode. A camera (a "video" feature) is decoded
from its mp4 only when asked for, and then only the frames indexed (vqbet.data.formats.video).
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


def _episode_videos(
    root: Path, info: dict[str, Any], key: str, episodes: list[int]
) -> list[tuple[str, float, float]]:
    """(video path, first timestamp, fps) of each episode's frames of camera `key`."""
    fps = float(info["fps"])
    if info["codebase_version"] != "v3.0":
        chunk = int(info.get("chunks_size", 1000))
        return [
            (
                str(
                    root / info["video_path"].format(episode_chunk=e // chunk, video_key=key, episode_index=e)
                ),
                0.0,
                fps,
            )
            for e in episodes
        ]
    pq = optional("pyarrow.parquet", "lerobot")
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    names = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
    table = pa_concat([pq.read_table(f, columns=["episode_index", *names]) for f in files])
    rows = {int(e): i for i, e in enumerate(table.column("episode_index").to_pylist())}
    cols = [table.column(n).to_pylist() for n in names]
    out = []
    for e in episodes:
        if e not in rows:
            raise ValueError(f"{root}: meta/episodes has no row for episode {e}")
        i = rows[e]
        path = root / info["video_path"].format(video_key=key, chunk_index=cols[0][i], file_index=cols[1][i])
        out.append((str(path), float(cols[2][i]), fps))
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
    tables = []
    for file in files:
        schema = pq.read_schema(file).names
        missing = [k for k in wanted if k not in schema]
        if missing:
            raise ValueError(f"{file}: column(s) {missing} missing; it has {schema}")
        tables.append(pq.read_table(file, columns=wanted + (["index"] if "index" in schema else [])))
    table = pa_concat(tables)
    if "index" in table.column_names:
        table = table.take(np.argsort(column(table, "index", where)[:, 0], kind="stable"))
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
        parts = _episode_videos(root, info, key, order.tolist())
        missing = [p[0] for p in parts if not Path(p[0]).is_file()]
        if missing:
            raise FileNotFoundError(f"{where}: camera '{key}': video file(s) missing, e.g. {missing[0]}")
        height, width = frame_size(parts[0][0])
        data.images[name] = LazyFrames(parts, (ends - starts).tolist(), (height, width, 3), read_frames)
    if cameras:
        data.attrs["image_keys"] = cameras
    return data
