"""Check that LeRobot's dataset tools keep a vqbet LeRobot export's statistics whole.

Run with a Python that has lerobot 0.6.1 installed (not vqbet's environment):

    <python with lerobot 0.6.1> integrations/lerobot/check_export.py <folder> [--keep]

It loads <folder> with LeRobotDataset, then in a temporary folder runs delete_episodes (drops one
episode), split_dataset (two splits) and merge_datasets (merges the splits back), and compares each
result's meta/stats.json with statistics computed here with numpy from the remaining frames of the
export: min, max, mean, std and count over all frames; q01..q99 as LeRobot defines them (each
episode's quantile read off a 5000-bin histogram, then the count-weighted mean over episodes).
Frame and episode counts are compared too. index/episode_index stats are compared with the
export's own numbering of the kept frames: LeRobot carries each episode's stats over unchanged.
Camera stats are compared with frames decoded from the videos (lossy: absolute tolerance 0.03 in
[0, 1] units). Prints a table; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
REL, QUANTILE_OF_RANGE, CAMERA_ABS = 1e-5, 1e-6, 0.03


def histogram_quantiles(values: np.ndarray) -> dict[str, np.ndarray]:
    """One episode's quantiles per dimension, as LeRobot's RunningQuantileStats computes them."""
    n, dims = values.shape
    out = {key: np.empty(dims) for key in QUANTILES}
    if n < 2:
        return {key: values.mean(0) for key in QUANTILES}
    for i in range(dims):
        edges = np.linspace(values[:, i].min() - 1e-10, values[:, i].max() + 1e-10, 5001)
        cumsum = np.cumsum(np.histogram(values[:, i], bins=edges)[0])
        for key, q in QUANTILES.items():
            idx = int(np.searchsorted(cumsum, q * n))
            if idx == 0:
                out[key][i] = edges[0]
            elif idx >= len(cumsum):
                out[key][i] = edges[-1]
            else:
                in_bin = cumsum[idx] - cumsum[idx - 1]
                fraction = (q * n - cumsum[idx - 1]) / in_bin if in_bin else 0.0
                out[key][i] = edges[idx] + fraction * (edges[idx + 1] - edges[idx])
    return out


def expected_stats(episodes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """numpy stats of the frames of `episodes` (each (frames, dims), float64)."""
    pooled = np.concatenate(episodes)
    counts = np.array([len(e) for e in episodes], dtype=np.float64)
    stats = {
        "min": pooled.min(0),
        "max": pooled.max(0),
        "mean": pooled.mean(0),
        "std": pooled.std(0),
        "count": np.array([len(pooled)]),
    }
    per_episode = [histogram_quantiles(e) for e in episodes]
    for key in QUANTILES:
        stats[key] = (np.stack([q[key] for q in per_episode]) * counts[:, None]).sum(0) / counts.sum()
    return stats


def sample_indices(length: int) -> np.ndarray:
    num = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int)


def compare(name: str, got: dict, want: dict, camera: bool) -> list[str]:
    """Mismatched stats of one feature, as 'stat: worst error'."""
    bad = []
    span = np.abs(want["max"] - want["min"]).max()
    for stat, expected in want.items():
        if stat not in got:
            bad.append(f"{stat}: missing")
            continue
        value = np.asarray(got[stat], dtype=np.float64).reshape(-1)
        expected = np.asarray(expected, dtype=np.float64).reshape(-1)
        if value.shape != expected.shape:
            bad.append(f"{stat}: shape {value.shape} != {expected.shape}")
            continue
        if stat == "count":
            tolerance = 0.0
        elif camera:
            tolerance = CAMERA_ABS
        elif stat in QUANTILES:
            tolerance = REL * np.abs(expected) + QUANTILE_OF_RANGE * span + 1e-9
        else:
            tolerance = REL * np.abs(expected) + 1e-9
        error = np.abs(value - expected)
        if np.any(error > tolerance):
            bad.append(f"{stat}: {error.max():.3g}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    from lerobot.datasets.dataset_tools import delete_episodes, merge_datasets, split_dataset
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    folder = args.folder.resolve()
    info = json.loads((folder / "meta" / "info.json").read_text())
    features = info["features"]
    dataset = LeRobotDataset("vqbet/export", root=folder)
    episodes = dataset.meta.total_episodes
    if episodes < 3:
        print(f"{folder}: {episodes} episodes; the check needs at least 3")
        return 2
    frames = pd.concat(pd.read_parquet(p) for p in sorted((folder / "data").rglob("*.parquet")))
    frames = frames.sort_values("index")
    numeric = [k for k, f in features.items() if f["dtype"] not in ("video", "image", "string")]
    cameras = [k for k, f in features.items() if f["dtype"] in ("video", "image")]

    dropped = episodes // 2
    kept = [e for e in range(episodes) if e != dropped]
    half = len(kept) // 2
    work = Path(tempfile.mkdtemp(prefix="vqbet_lerobot_check_"))
    try:
        deleted = delete_episodes(dataset, [dropped], output_dir=work / "deleted", repo_id="vqbet/deleted")
        splits = split_dataset(
            deleted, {"a": list(range(half)), "b": list(range(half, len(kept)))}, output_dir=work / "split"
        )
        merged = merge_datasets([splits["a"], splits["b"]], "vqbet/merged", output_dir=work / "merged")
        stages = {
            "delete_episodes": (deleted, kept),
            "split_dataset[a]": (splits["a"], kept[:half]),
            "split_dataset[b]": (splits["b"], kept[half:]),
            "merge_datasets": (merged, kept),
        }

        def source(key: str, episode_ids: list[int]) -> list[np.ndarray]:
            out = []
            for e in episode_ids:
                column = frames.loc[frames["episode_index"] == e, key].to_numpy()
                out.append(np.stack(column).astype(np.float64).reshape(len(column), -1))
            return out

        def camera_frames(key: str, episode_ids: list[int]) -> list[np.ndarray]:
            out = []
            starts = dataset.meta.episodes["dataset_from_index"]
            ends = dataset.meta.episodes["dataset_to_index"]
            for e in episode_ids:
                picked = [
                    dataset[int(starts[e] + i)][key].numpy() for i in sample_indices(ends[e] - starts[e])
                ]
                chw = np.stack(picked)  # (k, 3, h, w) in [0, 1]
                out.append(chw.transpose(0, 2, 3, 1).reshape(-1, chw.shape[1]).astype(np.float64))
            return out

        failures = 0
        print(f"{folder}: {episodes} episodes, {len(frames)} frames; dropped episode {dropped}")
        print(f"{'stage':<18} {'episodes':>8} {'frames':>7}  {'stats features':>14}  result")
        for stage, (result, ids) in stages.items():
            stats = json.loads((Path(result.root) / "meta" / "stats.json").read_text())
            want_frames = int(sum(len(e) for e in source("index", ids)))
            problems = []
            if result.meta.total_episodes != len(ids):
                problems.append(f"episodes {result.meta.total_episodes} != {len(ids)}")
            if result.meta.total_frames != want_frames or len(result) != want_frames:
                problems.append(f"frames {result.meta.total_frames}/{len(result)} != {want_frames}")
            if not stats:
                problems.append("stats.json is empty")
            for key in numeric:
                if key not in stats:
                    problems.append(f"{key}: no stats")
                    continue
                bad = compare(key, stats[key], expected_stats(source(key, ids)), camera=False)
                problems += [f"{key} {b}" for b in bad]
            for key in cameras:
                if key not in stats:
                    problems.append(f"{key}: no stats")
                    continue
                want = expected_stats(camera_frames(key, ids))
                want["count"] = np.array(
                    [
                        sum(
                            len(
                                sample_indices(
                                    dataset.meta.episodes["dataset_to_index"][e]
                                    - dataset.meta.episodes["dataset_from_index"][e]
                                )
                            )
                            for e in ids
                        )
                    ]
                )
                bad = compare(key, stats[key], want, camera=True)
                problems += [f"{key} {b}" for b in bad]
            failures += bool(problems)
            result_text = "ok" if not problems else "MISMATCH: " + "; ".join(problems)
            print(
                f"{stage:<18} {result.meta.total_episodes:>8} {result.meta.total_frames:>7}  "
                f"{len(stats):>14}  {result_text}"
            )
        tolerances = f"rel {REL:g}; quantiles + {QUANTILE_OF_RANGE:g} x range; cameras abs {CAMERA_ABS:g}"
        print(f"tolerances: {tolerances}; {'all match' if not failures else f'{failures} stage(s) differ'}")
        return 1 if failures else 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
