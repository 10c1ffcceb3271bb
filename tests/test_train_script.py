"""scripts/train.py end to end, and exact resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
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


def weights(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


def test_smoke_run_writes_checkpoints(tmp):
    out = subprocess.run(command(tmp, "a"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "phase 1: tokenizer" in out.stdout and "phase 2: policy" in out.stdout
    for name in ("last", "best"):
        folder = tmp / "a" / "checkpoints" / name
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (tmp / "a" / "checkpoints" / "last" / "train_state.safetensors").is_file()
    assert any((tmp / "a" / "tensorboard").glob("events.out.tfevents.*"))


def test_sigkill_then_resume_equals_uninterrupted_run(tmp):
    steps = ["train.steps=300", "train.checkpoint_every=10", "train.eval_every=100"]
    full = subprocess.run(
        command(tmp, "full", *steps), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr[-3000:]

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

    resumed = subprocess.run(
        command(tmp, "killed", *steps, "resume=true"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(tmp / "full"), weights(tmp / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key
