"""The side-by-side scorer's bookkeeping: where a stopped lerobot-train run resumes, the training
rate read from its log, and the table (the rollouts themselves run in test_lerobot_policy_plugin)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "side_by_side.py"
spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
side_by_side = importlib.util.module_from_spec(spec)
spec.loader.exec_module(side_by_side)


def checkpoint(run: Path, step: int, steps: int = 3000, batch: int = 64) -> Path:
    """The two files of a lerobot-train checkpoint that say how far it got and for what protocol."""
    last = run / "checkpoints" / "last"
    (last / "training_state").mkdir(parents=True)
    (last / "pretrained_model").mkdir()
    state = {"step": step, "num_processes": 1, "batch_size": batch}
    (last / "training_state" / "training_step.json").write_text(json.dumps(state))
    config = {"steps": steps, "batch_size": batch}
    (last / "pretrained_model" / "train_config.json").write_text(json.dumps(config))
    return run


def run_progress(run: Path, steps: int, batch: int) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(SCRIPT),
        "progress",
        str(run),
        "--steps",
        str(steps),
        "--batch",
        str(batch),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_progress_of_fresh_stopped_and_finished_runs(tmp_path: Path) -> None:
    assert side_by_side.progress(tmp_path / "none", 3000, 64) is None
    (tmp_path / "started").mkdir()  # lerobot-train made the folder, then stopped before a checkpoint
    assert side_by_side.progress(tmp_path / "started", 3000, 64) is None
    assert side_by_side.progress(checkpoint(tmp_path / "part", 750), 3000, 64) == 750
    assert run_progress(tmp_path / "part", 3000, 64).stdout.strip() == "750"
    assert run_progress(checkpoint(tmp_path / "full", 3000), 3000, 64).stdout.strip() == "done"
    assert run_progress(tmp_path / "none", 3000, 64).stdout.strip() == "fresh"


def test_a_run_of_another_protocol_is_refused_by_name(tmp_path: Path) -> None:
    run = checkpoint(tmp_path / "run", 500, steps=3000, batch=64)
    with pytest.raises(ValueError, match="3000 steps at batch 64, not 3000 at batch 256"):
        side_by_side.progress(run, 3000, 256)
    result = run_progress(run, 6000, 64)
    assert result.returncode == 2
    assert str(run) in result.stderr and "not 6000 at batch 64" in result.stderr
    (run / "checkpoints/last/training_state/training_step.json").write_text("{")  # cut short
    with pytest.raises(ValueError, match="not a lerobot-train checkpoint"):
        side_by_side.progress(run, 3000, 64)


def test_samples_per_s_is_the_median_of_the_second_half_over_resumed_logs(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    first = "".join(
        f"INFO step:{50 * i} smpl:1K updt_s:1.0 smp/s:{rate}\n" for i, rate in enumerate((5, 90, 100))
    )
    resumed = "INFO Resuming data order at epoch 0, sample 9600\nINFO step:200 smp/s:110\n"
    log.write_text(first + resumed)
    assert side_by_side.samples_per_s(log) == pytest.approx(105.0)  # median of 100 and 110
    (tmp_path / "empty.log").write_text("no rate logged\n")
    assert side_by_side.samples_per_s(tmp_path / "empty.log") is None


def test_table_has_one_row_per_scored_checkpoint(tmp_path: Path) -> None:
    files = []
    for label, wins, rate in (("lerobot_vqbet", 0.98, 26.5), ("vqbetlib", 1.0, None)):
        result = {
            "label": label,
            "success": wins,
            "success_interval": [wins - 0.05, 1.0],
            "orders": 15,
            "order_entropy": 1.7854,
            "acting_ms_batch1": 12.345,
            "train_samples_per_s": rate,
        }
        files.append(tmp_path / f"{label}.json")
        files[-1].write_text(json.dumps(result))
    rows = side_by_side.table(files).splitlines()
    assert rows[2] == "| lerobot_vqbet | 0.98 (0.93-1.00) | 15 | 1.785 | 12.35 | 26 |"
    assert rows[3] == "| vqbetlib | 1.00 (0.95-1.00) | 15 | 1.785 | 12.35 | - |"


def test_table_shows_pusht_coverage_where_a_checkpoint_has_it(tmp_path: Path) -> None:
    files = []
    for label, coverage in (("lerobot_vqbet", [0.5, 0.75]), ("vqbetlib", None)):
        result = {
            "label": label,
            "success": 0.5,
            "success_interval": [0.1, 0.9],
            "orders": 2,
            "order_entropy": 0.6931,
            "acting_ms_batch1": 3.0,
            "train_samples_per_s": 40.0,
        }
        if coverage is not None:
            result["max_coverage"] = side_by_side._mean_of(
                [{"max_coverage": c} for c in coverage], "max_coverage"
            )
        files.append(tmp_path / f"{label}.json")
        files[-1].write_text(json.dumps(result))
    rows = side_by_side.table(files).splitlines()
    assert "mean max coverage" in rows[0]
    assert rows[0].count("|") == rows[1].count("|") == rows[2].count("|") == rows[3].count("|") == 8
    assert rows[2] == "| lerobot_vqbet | 0.50 (0.10-0.90) | 2 | 0.693 | 0.625 | 3.00 | 40 |"
    assert rows[3] == "| vqbetlib | 0.50 (0.10-0.90) | 2 | 0.693 | - | 3.00 | 40 |"


class EndingEnv:
    """A 2-env vector env whose env i ends its episode at step i + 2, reporting at that step (in
    "final_info", as LeRobot's vector envs do) a success, an order and PushT's max coverage made
    from its seed; before that, info holds other envs' unrelated values."""

    num_envs = 2

    def __init__(self, coverage: bool) -> None:
        self.coverage = coverage

    def reset(self, seed: list[int]) -> tuple[dict, dict]:
        self.seeds, self.t = list(seed), 0
        return {}, {}

    def step(self, action: np.ndarray) -> tuple:
        assert action.shape == (2, 2)
        self.t += 1
        ended = np.array([self.t == i + 2 for i in range(2)])
        final = {
            "is_success": np.array([s % 2 == 0 for s in self.seeds]),
            "order": [[s % 3, 1] for s in self.seeds],
        }
        if self.coverage:
            final["max_coverage"] = np.array([s / 100 for s in self.seeds])
        info = {"final_info": final, "is_success": np.array([True, True]), "order": [[9], [9]]}
        return {}, np.zeros(2), ended, np.zeros(2, dtype=bool), info


class Resettable:
    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


@pytest.mark.parametrize("coverage", [True, False])
def test_rollouts_keep_each_episodes_end_as_reported(monkeypatch: pytest.MonkeyPatch, coverage: bool) -> None:
    monkeypatch.setattr(side_by_side, "_act", lambda env, *parts: np.zeros((env.num_envs, 2)))
    policy = Resettable()
    episodes = side_by_side.rollouts(EndingEnv(coverage), (policy, None, None, None, None), 3, 10)
    assert [e["seed"] for e in episodes] == [10, 11, 12]
    assert [e["success"] for e in episodes] == [True, False, True]
    assert [e["order"] for e in episodes] == [[1, 1], [2, 1], [0, 1]]
    assert policy.resets == 2  # once per round of num_envs episodes
    if coverage:
        assert [e["max_coverage"] for e in episodes] == pytest.approx([0.10, 0.11, 0.12])
        assert side_by_side._mean_of(episodes, "max_coverage") == pytest.approx(0.11)
    else:
        assert all("max_coverage" not in e for e in episodes)
        assert side_by_side._mean_of(episodes, "max_coverage") is None
