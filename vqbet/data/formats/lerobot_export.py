"""Write demonstrations as a LeRobotDataset v3.0 folder (one data file, one episodes file, the
camera as one mp4), so that collections made here can be shared on the hub and read by LeRobot.
The folder is written beside its final name and swapped in whole (vqbet.io.atomic)."""

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
from vqbet.io.atomic import clean_stale, replace_folder, temp_prefix
from vqbet.io.full_disk import naming_full_disk

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def _vector(pa: Any, values: np.ndarray) -> Any:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _stats(values: np.ndarray) -> dict[str, Any]:
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


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
) -> Path:
    """Write `data` as a LeRobotDataset v3.0 folder at `out`, one video per camera: the camera
    "image" as `image_key`, any other camera <name> as "observation.images.<name>" (LeRobot's
    multi-camera naming); an env_state as "observation.environment_state"."""
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
            columns = {
                obs_key: _vector(pa, data.obs),
                action_key: _vector(pa, data.action),
                "timestamp": pa.array((frame / fps).astype(np.float32)),
                "frame_index": pa.array(frame.astype(np.int64)),
                "episode_index": pa.array(episode.astype(np.int64)),
                "index": pa.array(np.arange(n, dtype=np.int64)),
                "task_index": pa.array(np.zeros(n, dtype=np.int64)),
            }
            if data.env_state is not None:
                columns[ENV_STATE_KEY] = _vector(pa, data.env_state)
            data_file = tmp / DATA_PATH.format(chunk_index=0, file_index=0)
            data_file.parent.mkdir(parents=True)
            pq.write_table(pa.table(columns), data_file)
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
            stats = {obs_key: _stats(data.obs), action_key: _stats(data.action)}
            if data.env_state is not None:
                features[ENV_STATE_KEY] = {
                    "dtype": "float32",
                    "shape": [data.env_state.shape[1]],
                    "names": None,
                }
                stats[ENV_STATE_KEY] = _stats(data.env_state)
            episodes: dict[str, Any] = {
                "episode_index": pa.array(np.arange(data.num_episodes, dtype=np.int64)),
                "tasks": pa.array([[task]] * data.num_episodes, pa.list_(pa.string())),
                "length": pa.array(lengths.astype(np.int64)),
                "data/chunk_index": pa.array(np.zeros(data.num_episodes, np.int64)),
                "data/file_index": pa.array(np.zeros(data.num_episodes, np.int64)),
                "dataset_from_index": pa.array(starts.astype(np.int64)),
                "dataset_to_index": pa.array(ends.astype(np.int64)),
                "meta/episodes/chunk_index": pa.array(np.zeros(data.num_episodes, np.int64)),
                "meta/episodes/file_index": pa.array(np.zeros(data.num_episodes, np.int64)),
            }
            if data.images:  # PyAV only when there is a camera to write
                from vqbet.data.formats.video import write_video
            for camera, frames in data.images.items():
                key = image_key if camera == "image" else f"observation.images.{camera}"
                video = tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
                write_video(video, (np.asarray(frames[i]) for i in range(n)), fps)
                h, w = frames.shape[1:3]
                features[key] = {
                    "dtype": "video",
                    "shape": [h, w, 3],
                    "names": ["height", "width", "channels"],
                    "info": {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv444p"},
                }
                sample = np.asarray(frames[np.linspace(0, n - 1, min(n, 100)).astype(int)], np.float64) / 255
                per_channel = sample.reshape(-1, 3)
                stats[key] = {
                    k: [[[v]] for v in values] for k, values in _stats(per_channel).items() if k != "count"
                }
                stats[key]["count"] = [int(n)]
                prefix = f"videos/{key}/"
                episodes[prefix + "chunk_index"] = pa.array(np.zeros(data.num_episodes, np.int64))
                episodes[prefix + "file_index"] = pa.array(np.zeros(data.num_episodes, np.int64))
                episodes[prefix + "from_timestamp"] = pa.array(starts / fps)
                episodes[prefix + "to_timestamp"] = pa.array(ends / fps)
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
                "chunks_size": 1000,
                "data_files_size_in_mb": 100,
                "video_files_size_in_mb": 500,
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
