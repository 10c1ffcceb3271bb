"""scripts/train.py end to end, and exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TQDM_DISABLE="1", MUJOCO_GL="egl")


def command(tmp: Path, run: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "scripts/train.py",
        "experiment=smoke",
        f"run_dir={tmp / run}",
        f"task.dataset={tmp / 'data.hdf5'}",
        *extra,
    ]


def train(tmp: Path, run: str, *extra: str) -> subprocess.CompletedProcess:
    """Run scripts/train.py to completion; fail with its stderr if it fails."""
    out = subprocess.run(
        command(tmp, run, *extra), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def weights(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


def test_smoke_run_writes_checkpoints(tmp):
    out = train(tmp, "a")
    assert "phase 1: vqbet statistics" in out.stdout and "phase 2: vqbet" in out.stdout
    # Output to a pipe, not a terminal: both phases print plain progress lines, not a silent bar.
    assert "tokenizer step 50/50 (100%) recon" in out.stdout
    assert "policy step 40/40 (100%) loss" in out.stdout and "code acc" in out.stdout and "ETA" in out.stdout
    for name in ("last", "best"):
        folder = tmp / "a" / "checkpoints" / name
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (tmp / "a" / "checkpoints" / "last" / "train_state.safetensors").is_file()
    assert any((tmp / "a" / "tensorboard").glob("events.out.tfevents.*"))
    for name in (
        "report.md",
        "results.json",
        "orders.png",
        "curves.png",
        "codebook_usage.png",
        "rollouts.mp4",
    ):
        assert (tmp / "a" / name).stat().st_size > 0, name
    assert "success" in (tmp / "a" / "report.md").read_text()


def evaluate_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/eval.py", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eval_script_reports_on_a_checkpoint_and_refuses_the_wrong_task(tmp):
    if not (tmp / "a" / "checkpoints" / "best").is_dir():
        train(tmp, "a")
    best = tmp / "a" / "checkpoints" / "best"
    args = [
        "eval.episodes=3",
        "eval.num_envs=2",
        "eval.first_seed=2000000",
        "act.execution=ensemble",
        "act.temperature=0",
    ]
    out = evaluate_script(f"checkpoint={best}", *args, f"out={tmp / 'ev'}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp / "ev" / "results.json").read_text())
    assert results["act"] == {"execution": "ensemble", "temperature": 0}
    assert results["env_id"] == "vqbet/MultiReach-v0" and results["summary"]["episodes"] == 3
    assert [e["seed"] for e in results["episodes"]] == [2_000_000, 2_000_001, 2_000_002]
    assert (tmp / "ev" / "rollouts.mp4").stat().st_size > 0 and (tmp / "ev" / "report.md").is_file()
    wrong = evaluate_script(f"checkpoint={best}", "task=pusht", f"out={tmp / 'ev2'}")
    assert wrong.returncode != 0 and "was trained on vqbet/MultiReach-v0" in wrong.stderr
    bad = evaluate_script(f"checkpoint={best}", "act.execution=sideways", f"out={tmp / 'ev3'}")
    assert bad.returncode != 0 and "execution must be one of queue|ensemble" in bad.stderr
    missing = evaluate_script(f"checkpoint={tmp / 'nope'}")
    assert missing.returncode != 0 and "not a policy checkpoint folder" in missing.stderr
    assert not (tmp / "ev2").exists()


@pytest.mark.parametrize("policy", ["mlp", "bet"])
def test_baselines_train_and_evaluate(tmp, policy):
    out = train(tmp, policy, f"policy={policy}", "eval.video_episodes=0")
    assert f"{policy} on vqbet/MultiReach-v0: success" in out.stdout


def test_sigkill_then_resume_equals_uninterrupted_run(tmp):
    steps = [
        "train.steps=300",
        "train.checkpoint_every=10",
        "train.eval_every=100",
        "eval.during_training=0",
        "eval.video_episodes=0",
        "policy.n_layer=1",
        "policy.n_head=2",
        "policy.n_embd=32",
        "policy.head_hidden=64",
    ]
    train(tmp, "full", *steps)

    state = tmp / "killed" / "checkpoints" / "last" / "train_state.json"
    proc = subprocess.Popen(
        command(tmp, "killed", *steps),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and '"step": 50' in state.read_text():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert '"step": 300' not in state.read_text()
    held = json.loads(state.read_text())
    assert held["seconds"] > 0  # the killed job's time up to its checkpoint
    # A stand-in for a long first job: the resumed run's train time must add its own to it.
    state.write_text(json.dumps({**held, "seconds": 10_000.0}))

    began = time.perf_counter()
    train(tmp, "killed", *steps, "resume=true")
    took = time.perf_counter() - began
    resumed = json.loads((tmp / "killed" / "results.json").read_text())["train_seconds"]
    assert 10_000.0 < resumed < 10_000.0 + took
    a, b = weights(tmp / "full"), weights(tmp / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key
