"""vqbet's LeRobot exports through LeRobot's own dataset tools (run with LeRobot's Python):
delete_episodes, split_dataset and merge_datasets keep every statistic and count
(integrations/lerobot/check_export.py), for state-only data, two cameras, and data and videos
split over several files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

CHECK = Path(__file__).resolve().parents[1] / "check_export.py"


@pytest.mark.parametrize("kind", ["state", "cameras", "split"])
def test_lerobots_tools_keep_the_stats(datasets, kind):
    done = subprocess.run(
        [sys.executable, str(CHECK), str(datasets[kind])], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stages = [line for line in done.stdout.splitlines() if line.split()[:1] and "_" in line.split()[0]]
    assert len(stages) == 4 and all(line.endswith("ok") for line in stages), done.stdout
    assert "all match" in done.stdout


def test_split_files_are_what_lerobot_expects(datasets):
    """LeRobot reads each episode of a multi-file export from the file its metadata names."""
    from lerobot.datasets import LeRobotDataset

    dataset = LeRobotDataset("local/split", root=datasets["split"])
    episodes = dataset.meta.episodes
    count = dataset.meta.total_episodes
    for column in ("data/file_index", "videos/observation.images.top/file_index"):
        files = sorted(set(episodes[column]))
        assert files == list(range(len(files))) and 1 < len(files) < count, (column, files)
    for e in range(count):
        first = dataset[int(episodes["dataset_from_index"][e])]
        assert int(first["episode_index"]) == e and int(first["frame_index"]) == 0
