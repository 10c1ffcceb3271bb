"""Write demonstrations as a LeRobotDataset v3.0 folder, so that collections made here can be shared
on the hub and read by LeRobot. Frames go to parquet data files and each camera to mp4 files, both
split at LeRobot's default sizes as LeRobot splits them (a file holds whole episodes; a new one
starts where the next episode would take a data file to 100 MB or a video file to 200 MB; each
episode's video is encoded alone, then joined without re-encoding), numbered as LeRobot numbers
them (1000 files a chunk). The folder is written beside its final name and swapped
in whole (vqbet.io.atomic)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vqbet.data.episodes import EpisodeData
from vqbet.data.formats.common import optional
from vqbet.data.formats.lerobot import ENV_STATE_KEY
from vqbet.data.formats.video import ENCODING, concat_videos, write_video  # PyAV loads on first use
from vqbet.io.atomic import clean_stale, replace_folder, temp_prefix
from vqbet.io.full_disk import naming_full_disk

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def _vector(pa: Any, values: np.ndarray) -> Any:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


# LeRobot 0.6.1's statistics (lerobot/datasets/compute_stats.py): per episode and feature min, max,
# mean, std, count and the quantiles q01..q99, read off a 5000-bin histogram between the episode's
# min and max; camera stats over LeRobot's sample of the episode's frames, per channel in [0, 1].
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
QUANTILE_BINS = 5000
# LeRobot's default file sizes (lerobot/datasets/utils.py).
CHUNKS_SIZE, DATA_FILES_SIZE_IN_MB, VIDEO_FILES_SIZE_IN_MB = 1000, 100, 200


def lerobot_video_info(fps: int) -> dict[str, Any]:
    """A camera feature's `info` as LeRobot reads it back into an encoder config: LeRobot's tools
    re-encode the videos they cut (delete_episodes) with these settings, so they stay lossless and
    without B-frames rather than taking LeRobot's defaults (g 2, crf 30)."""
    options = {k: v for k, v in ENCODING["options"].items() if k != "crf"}
    return {
        "video.fps": fps,
        "video.codec": "h264",
        "video.pix_fmt": ENCODING["pix_fmt"],
        "video.g": fps,
        "video.crf": int(ENCODING["options"]["crf"]),
        "video.extra_options": options,
    }


def chunk_and_file(counter: np.ndarray | int) -> tuple[Any, Any]:
    """(chunk_index, file_index) of the counter-th file, LeRobot's numbering."""
    return np.divmod(counter, CHUNKS_SIZE)


def data_file_groups(row_bytes: int, lengths: np.ndarray, limit_mb: float) -> np.ndarray:
    """(episodes,) the data file of each episode: a new file where the next episode's frames
    (`row_bytes` raw bytes each, what parquet stores for float and int columns) would take the
    current one to `limit_mb` (LeRobot's rule); a file holds at least one episode."""
    files = np.zeros(len(lengths), dtype=np.int64)
    current, used = 0, 0
    for e, length in enumerate(lengths.tolist()):
        size = length * row_bytes
        if used and used + size >= limit_mb * 2**20:
            current, used = current + 1, 0
        files[e], used = current, used + size
    return files


def _write_camera(
    folder: Path, key: str, frames: Any, starts: np.ndarray, ends: np.ndarray, fps: int, limit_mb: float
) -> dict[str, np.ndarray]:
    """Encode camera `key`'s episodes one mp4 each, then join them into files as LeRobot does
    (a new file where the next episode would take the current one to `limit_mb`): each episode's
    file counter and its from/to timestamps within that file."""
    parts_dir = folder / "videos" / f".{key}.episodes"
    count = len(starts)
    out = {"file": np.zeros(count, np.int64), "from": np.zeros(count), "to": np.zeros(count)}
    groups: list[list[Path]] = [[]]
    used_mb, frames_in_file = 0.0, 0
    for e, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        part = write_video(parts_dir / f"{e:06d}.mp4", (np.asarray(frames[i]) for i in range(a, b)), fps)
        size_mb = part.stat().st_size / 2**20
        if groups[-1] and used_mb + size_mb >= limit_mb:
            groups.append([])
            used_mb, frames_in_file = 0.0, 0
        groups[-1].append(part)
        out["file"][e], out["from"][e] = len(groups) - 1, frames_in_file / fps
        used_mb, frames_in_file = used_mb + size_mb, frames_in_file + b - a
        out["to"][e] = frames_in_file / fps
    for counter, parts in enumerate(groups):
        chunk, file = chunk_and_file(counter)
        video = folder / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        video.parent.mkdir(parents=True, exist_ok=True)
        if len(parts) == 1:
            parts[0].rename(video)
        else:
            concat_videos(parts, video)
    shutil.rmtree(parts_dir)
    return out


def _histogram_quantiles(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's RunningQuantileStats quantiles for one batch: linear within the histogram bin."""
    n, dims = values.shape
    out = {key: np.empty(dims) for key in QUANTILES}
    for i in range(dims):
        edges = np.linspace(low[i] - 1e-10, high[i] + 1e-10, QUANTILE_BINS + 1)
        cumsum = np.cumsum(np.histogram(values[:, i], bins=edges)[0])
        for key, q in QUANTILES.items():
            target = q * n
            idx = int(np.searchsorted(cumsum, target))
            if idx == 0:
                out[key][i] = edges[0]
            elif idx >= len(cumsum):
                out[key][i] = edges[-1]
            else:
                before = cumsum[idx - 1]
                in_bin = cumsum[idx] - before
                fraction = (target - before) / in_bin if in_bin else 0.0
                out[key][i] = edges[idx] + fraction * (edges[idx + 1] - edges[idx])
    return out


def feature_stats(values: np.ndarray, count: int | None = None) -> dict[str, np.ndarray]:
    """One episode's stats of `values` (frames, dims), in float64, as LeRobot's get_feature_stats
    computes them (std over n, quantiles from the histogram; with one frame every quantile is the
    mean); `count` is the number of frames LeRobot records (its sample size for cameras)."""
    values = np.asarray(values, dtype=np.float64)
    stats = {
        "min": values.min(0),
        "max": values.max(0),
        "mean": values.mean(0),
        "std": values.std(0),
        "count": np.array([len(values) if count is None else count], dtype=np.int64),
    }
    if len(values) < 2:
        stats.update({key: stats["mean"].copy() for key in QUANTILES})
    else:
        stats.update(_histogram_quantiles(values, stats["min"], stats["max"]))
    return stats


def aggregate_stats(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """LeRobot's aggregate_feature_stats: count-weighted mean, pooled variance, min of the mins,
    max of the maxes, count-weighted mean of each quantile, summed count."""
    counts = np.stack([s["count"] for s in episodes])  # (episodes, 1)
    total = counts.sum(0)  # (1,): broadcasts against (dims,) and (3, 1, 1)
    means = np.stack([s["mean"] for s in episodes])
    weights = counts.reshape(-1, *[1] * (means.ndim - 1)).astype(np.float64)
    mean = (means * weights).sum(0) / total
    spread = np.stack([s["std"] for s in episodes]) ** 2 + (means - mean) ** 2
    out = {
        "min": np.min(np.stack([s["min"] for s in episodes]), 0),
        "max": np.max(np.stack([s["max"] for s in episodes]), 0),
        "mean": mean,
        "std": np.sqrt((spread * weights).sum(0) / total),
        "count": total,
    }
    for key in QUANTILES:
        out[key] = (np.stack([s[key] for s in episodes]) * weights).sum(0) / total
    return out


def _sample_indices(length: int) -> np.ndarray:
    """LeRobot's frames sampled from an episode for camera stats (compute_stats.sample_indices)."""
    num = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int)


def _camera_stats(frames: Any, start: int, end: int) -> dict[str, np.ndarray]:
    """Per-channel stats of an episode's sampled frames, downsampled as LeRobot does above 300 px,
    scaled to [0, 1] and shaped (3, 1, 1)."""
    picked = np.asarray(frames[start + _sample_indices(end - start)])  # (k, h, w, 3) uint8
    h, w = picked.shape[1:3]
    if max(h, w) >= 300:
        step = int(w / 150) if w > h else int(h / 150)
        picked = picked[:, ::step, ::step]
    stats = feature_stats(picked.reshape(-1, picked.shape[-1]), count=len(picked))
    return {k: v if k == "count" else (v / 255.0).reshape(-1, 1, 1) for k, v in stats.items()}


def _tasks_table(pa: Any, task: str) -> Any:
    """tasks.parquet as pandas writes it (the task string is the frame's index), without pandas."""
    table = pa.table({"task_index": pa.array([0], pa.int64()), "__index_level_0__": pa.array([task])})
    meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})


def export_lerobot(
    data: EpisodeData,
    out: str | os.PathLike,
    *,
    fps: int,
    task: str = "",
    robot_type: str | None = None,
    obs_key: str = "observation.state",
    action_key: str = "action",
    image_key: str = "observation.image",
    data_file_mb: float = DATA_FILES_SIZE_IN_MB,
    video_file_mb: float = VIDEO_FILES_SIZE_IN_MB,
) -> Path:
    """Write `data` as a LeRobotDataset v3.0 folder at `out`: the camera "image" as `image_key`,
    any other camera <name> as "observation.images.<name>" (LeRobot's multi-camera naming); an
    env_state as "observation.environment_state". Data and video files are split at
    `data_file_mb` / `video_file_mb` (LeRobot's defaults; info.json records them)."""
    for name, limit in (("data_file_mb", data_file_mb), ("video_file_mb", video_file_mb)):
        if not limit > 0:
            raise ValueError(f"export_lerobot: {name} must be > 0, got {limit}")
    pa = optional("pyarrow", "lerobot")
    pq = optional("pyarrow.parquet", "lerobot")
    final = Path(out)
    with naming_full_disk(final, f"; {final} is as it was before"):
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
        try:
            n, starts, ends = data.num_steps, data.episode_starts, data.episode_ends
            lengths = ends - starts
            episode = np.repeat(np.arange(data.num_episodes), lengths)
            frame = np.arange(n) - np.repeat(starts, lengths)
            numeric = {  # every column as written, (frames, dims): LeRobot keeps stats of each
                obs_key: np.asarray(data.obs, np.float32),
                action_key: np.asarray(data.action, np.float32),
                "timestamp": (frame / fps).astype(np.float32)[:, None],
                "frame_index": frame.astype(np.int64)[:, None],
                "episode_index": episode.astype(np.int64)[:, None],
                "index": np.arange(n, dtype=np.int64)[:, None],
                "task_index": np.zeros((n, 1), dtype=np.int64),
            }
            if data.env_state is not None:
                numeric[ENV_STATE_KEY] = np.asarray(data.env_state, np.float32)
            scalars = ("timestamp", "frame_index", "episode_index", "index", "task_index")
            columns = {
                key: pa.array(values[:, 0]) if key in scalars else _vector(pa, values)
                for key, values in numeric.items()
            }
            row_bytes = sum(values.dtype.itemsize * values.shape[1] for values in numeric.values())
            data_files = data_file_groups(row_bytes, lengths, data_file_mb)
            table = pa.table(columns)
            for counter in range(int(data_files[-1]) + 1):
                chunk, file = chunk_and_file(counter)
                data_file = tmp / DATA_PATH.format(chunk_index=chunk, file_index=file)
                data_file.parent.mkdir(parents=True, exist_ok=True)
                first, last = np.flatnonzero(data_files == counter)[[0, -1]]
                pq.write_table(table.slice(starts[first], ends[last] - starts[first]), data_file)
            scalar = {"shape": [1], "names": None}
            features: dict[str, Any] = {
                obs_key: {"dtype": "float32", "shape": [data.obs.shape[1]], "names": None},
                action_key: {"dtype": "float32", "shape": [data.action.shape[1]], "names": None},
                "timestamp": {"dtype": "float32", **scalar},
                "frame_index": {"dtype": "int64", **scalar},
                "episode_index": {"dtype": "int64", **scalar},
                "index": {"dtype": "int64", **scalar},
                "task_index": {"dtype": "int64", **scalar},
            }
            if data.env_state is not None:
                features[ENV_STATE_KEY] = {
                    "dtype": "float32",
                    "shape": [data.env_state.shape[1]],
                    "names": None,
                }
            episode_stats: dict[str, list[dict[str, np.ndarray]]] = {
                key: [feature_stats(values[a:b]) for a, b in zip(starts, ends, strict=True)]
                for key, values in numeric.items()
            }
            episodes: dict[str, Any] = {
                "episode_index": pa.array(np.arange(data.num_episodes, dtype=np.int64)),
                "tasks": pa.array([[task]] * data.num_episodes, pa.list_(pa.string())),
                "length": pa.array(lengths.astype(np.int64)),
                "data/chunk_index": pa.array(chunk_and_file(data_files)[0]),
                "data/file_index": pa.array(chunk_and_file(data_files)[1]),
                "dataset_from_index": pa.array(starts.astype(np.int64)),
                "dataset_to_index": pa.array(ends.astype(np.int64)),
                "meta/episodes/chunk_index": pa.array(np.zeros(data.num_episodes, np.int64)),
                "meta/episodes/file_index": pa.array(np.zeros(data.num_episodes, np.int64)),
            }
            for camera, frames in data.images.items():
                key = image_key if camera == "image" else f"observation.images.{camera}"
                videos = _write_camera(tmp, key, frames, starts, ends, fps, video_file_mb)
                h, w = frames.shape[1:3]
                features[key] = {
                    "dtype": "video",
                    "shape": [h, w, 3],
                    "names": ["height", "width", "channels"],
                    "info": lerobot_video_info(fps),
                }
                episode_stats[key] = [_camera_stats(frames, a, b) for a, b in zip(starts, ends, strict=True)]
                prefix = f"videos/{key}/"
                episodes[prefix + "chunk_index"] = pa.array(chunk_and_file(videos["file"])[0])
                episodes[prefix + "file_index"] = pa.array(chunk_and_file(videos["file"])[1])
                episodes[prefix + "from_timestamp"] = pa.array(videos["from"])
                episodes[prefix + "to_timestamp"] = pa.array(videos["to"])
            stats = {}
            for key, per_episode in episode_stats.items():  # columns stats/<feature>/<stat>
                for stat in per_episode[0]:
                    episodes[f"stats/{key}/{stat}"] = pa.array([one[stat].tolist() for one in per_episode])
                stats[key] = {k: v.tolist() for k, v in aggregate_stats(per_episode).items()}
            episodes_file = tmp / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
            episodes_file.parent.mkdir(parents=True)
            pq.write_table(pa.table(episodes), episodes_file)
            pq.write_table(_tasks_table(pa, task), tmp / "meta" / "tasks.parquet")
            info = {
                "codebase_version": "v3.0",
                "robot_type": robot_type,
                "total_episodes": data.num_episodes,
                "total_frames": n,
                "total_tasks": 1,
                "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": data_file_mb,
                "video_files_size_in_mb": video_file_mb,
                "fps": fps,
                "splits": {"train": f"0:{data.num_episodes}"},
                "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if data.images else None,
                "features": features,
            }
            (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
            (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))
            replace_folder(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
