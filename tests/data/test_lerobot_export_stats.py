"""export_lerobot writes LeRobot's per-episode stats columns (meta/episodes stats/<feature>/<stat>)
and meta/stats.json as LeRobot aggregates them, so LeRobot's delete/split/merge keep the stats."""

import json

import numpy as np
import pytest

from tests.data.test_formats import reference
from vqbet.data.formats import export_lerobot

pq = pytest.importorskip("pyarrow.parquet")

STATS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def histogram_quantile(x: np.ndarray, q: float) -> float:
    """LeRobot's quantile of one column: 5000 bins between min and max, linear within the bin."""
    edges = np.linspace(x.min() - 1e-10, x.max() + 1e-10, 5001)
    cumsum = np.cumsum(np.histogram(x, bins=edges)[0])
    target = q * len(x)
    i = int(np.searchsorted(cumsum, target))
    if i == 0:
        return edges[0]
    if i >= len(cumsum):
        return edges[-1]
    fraction = (target - cumsum[i - 1]) / (cumsum[i] - cumsum[i - 1])
    return edges[i] + fraction * (edges[i + 1] - edges[i])


def numpy_stats(rows: np.ndarray) -> dict:
    rows = rows.astype(np.float64).reshape(len(rows), -1)
    out = {
        "min": rows.min(0),
        "max": rows.max(0),
        "mean": rows.mean(0),
        "std": rows.std(0),
        "count": np.array([len(rows)]),
    }
    for key, q in QUANTILES.items():
        out[key] = np.array([histogram_quantile(rows[:, d], q) for d in range(rows.shape[1])])
    return out


def lerobot_aggregate(per_episode: list[dict]) -> dict:
    """compute_stats.aggregate_feature_stats, written out with numpy."""
    counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
    shape = (-1,) + (1,) * (np.ndim(per_episode[0]["mean"]))
    w = counts.reshape(shape)
    means = np.stack([s["mean"] for s in per_episode])
    mean = (means * w).sum(0) / counts.sum()
    var = ((np.stack([s["std"] for s in per_episode]) ** 2 + (means - mean) ** 2) * w).sum(0) / counts.sum()
    out = {
        "min": np.stack([s["min"] for s in per_episode]).min(0),
        "max": np.stack([s["max"] for s in per_episode]).max(0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([counts.sum()]),
    }
    for key in QUANTILES:
        out[key] = (np.stack([s[key] for s in per_episode]) * w).sum(0) / counts.sum()
    return out


def test_episode_stats_columns_and_aggregate_match_numpy(tmp_path):
    ref = reference(with_images=False)
    ref.env_state = np.random.default_rng(1).normal(size=(ref.num_steps, 4)).astype(np.float32)
    root = export_lerobot(ref, tmp_path / "lr", fps=10, task="reach")
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    frames = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    stats = json.loads((root / "meta/stats.json").read_text())
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (
        1000,
        100,
        200,
    )
    features = [k for k, f in info["features"].items() if f["dtype"] != "video"]
    assert sorted(stats) == sorted(features) and len(features) == 8
    episode_index = np.asarray(frames["episode_index"])
    for feature in features:
        column = np.asarray(frames[feature])
        per_episode = []
        for row in episodes:
            got = {s: np.asarray(row[f"stats/{feature}/{s}"]) for s in STATS}
            want = numpy_stats(column[episode_index == row["episode_index"]])
            for s in STATS:
                assert got[s].shape == want[s].shape, (feature, s)
                np.testing.assert_allclose(got[s], want[s], rtol=1e-12, atol=1e-12, err_msg=f"{feature} {s}")
            per_episode.append(got)
        aggregate = lerobot_aggregate(per_episode)
        for s in STATS:
            np.testing.assert_allclose(stats[feature][s], aggregate[s], rtol=1e-12, err_msg=f"{feature} {s}")
        pooled = column.astype(np.float64).reshape(len(column), -1)
        np.testing.assert_allclose(stats[feature]["mean"], pooled.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(stats[feature]["std"], pooled.std(0), rtol=1e-9, atol=1e-12)
    assert stats["index"]["max"] == [ref.num_steps - 1] and stats["index"]["count"] == [ref.num_steps]


def test_camera_stats_per_channel_over_lerobots_sample(tmp_path):
    ref = reference()
    root = export_lerobot(ref, tmp_path / "lr", fps=10, task="reach")
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    stats = json.loads((root / "meta/stats.json").read_text())
    for key, camera in (("observation.image", "image"), ("observation.images.wrist", "wrist")):
        per_episode = []
        for row, start, end in zip(episodes, ref.episode_starts, ref.episode_ends, strict=True):
            got = {s: np.asarray(row[f"stats/{key}/{s}"]) for s in STATS}
            # under 100 frames LeRobot samples every frame; the stats are per channel in [0, 1]
            # (quantiles: LeRobot's histogram is over 0..255 before the scaling, hence rtol 1e-6)
            want = numpy_stats(ref.images[camera][start:end].reshape(-1, 3) / 255.0)
            for s in STATS:
                expected = [end - start] if s == "count" else want[s].reshape(3, 1, 1)
                assert got[s].shape == np.shape(expected), (key, s)
                np.testing.assert_allclose(got[s], expected, rtol=1e-6, err_msg=f"{key} {s}")
            per_episode.append(got)
        aggregate = lerobot_aggregate(per_episode)
        for s in STATS:
            np.testing.assert_allclose(stats[key][s], aggregate[s], rtol=1e-12, err_msg=f"{key} {s}")
