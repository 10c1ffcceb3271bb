"""Fault injection: bad inputs, faults and divergence each give a clear error (or recover), and no
existing file changes. Each case of issue 15 is one test here."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vqbet.data import EpisodeData, check_outliers, read_hdf5, write_hdf5
from vqbet.evaluation.report import write_report
from vqbet.io import atomic
from vqbet.io.checkpoint import write_folder
from vqbet.pipeline import evaluate_checkpoint, train
from vqbet.policies import MLPConfig, MLPPolicy, load_policy
from vqbet.training.loop import TrainingDiverged

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TQDM_DISABLE="1", MUJOCO_GL="egl")


def config(tmp: Path, run: str, *overrides: str, name: str = "train") -> dict:
    """A resolved smoke config (as scripts/train.py would pass it) writing under `tmp`."""
    base = [f"run_dir={tmp / run}", f"task.dataset={tmp / 'data.hdf5'}", "eval.video_episodes=0"]
    if name == "train":
        base = ["experiment=smoke", "eval.during_training=0", *base]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(name, overrides=[*base, *overrides] if name == "train" else list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished smoke run (and its dataset) that the cases below try to damage."""
    tmp = tmp_path_factory.mktemp("faults")
    train(config(tmp, "run"))
    return tmp


def test_bad_settings_are_all_named_before_any_work(run, capsys):
    overrides = ["train.steps=0", "train.batch_size=0", "train.lr=abc", "+train.stepz=5", "eval.episodes=0"]
    with pytest.raises(ValueError, match=r"the run's config has 2 problem\(s\); nothing was started") as err:
        train(config(run, "bad", *overrides))
    message = str(err.value)
    assert (
        "unknown PolicyTrainConfig keys ['stepz']" in message
        and "episodes must be an integer >= 1" in message
    )
    with pytest.raises(
        ValueError, match="steps must be an integer >= 1, got 0; batch_size must be an integer"
    ):
        train(config(run, "bad", "train.steps=0", "train.batch_size=0"))
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 'abc'"):
        train(config(run, "bad", "train.steps=abc"))
    assert "phase 1" not in capsys.readouterr().out and not (run / "bad").exists()


def test_a_failed_start_never_changes_an_existing_run(run):
    before = snapshot(run / "run")
    with pytest.raises(FileExistsError, match=r"already holds a run.*resume=true.*overwrite=true"):
        train(config(run, "run", "overwrite=false"))
    with pytest.raises(ValueError, match=r"(?s)config differs.*policy.n_layer: 4 -> 2"):
        train(config(run, "run", "resume=true", "policy.n_layer=2"))
    with pytest.raises(FileNotFoundError, match=r"not the task's default.*collect.new_path=true"):
        train(
            config(run, "run", "resume=true", f"task.dataset={run / 'typo.hdf5'}", "collect.new_path=false")
        )
    assert not (run / "typo.hdf5").exists()
    other = run / "other.hdf5"
    write_hdf5(other, read_hdf5(run / "data.hdf5"))
    data = read_hdf5(other)
    data.attrs["task_id"] = "vqbet/PushT-v0"
    write_hdf5(other, data)
    with pytest.raises(
        ValueError, match="holds demonstrations of vqbet/PushT-v0, but the task is vqbet/MultiReach"
    ):
        train(config(run, "run", "resume=true", f"task.dataset={other}"))
    shifted = EpisodeData(obs=data.obs + 0.01, action=data.action, episode_ends=data.episode_ends, attrs={})
    write_hdf5(other, shifted)
    with pytest.raises(ValueError, match=r"is not the dataset .* was trained on"):
        train(config(run, "run", "resume=true", f"task.dataset={other}"))
    assert snapshot(run / "run") == before


def test_checkpoints_record_their_task_and_data_and_evaluate_without_the_dataset(run, tmp_path):
    best = run / "run" / "checkpoints" / "best"
    meta = json.loads((best / "config.json").read_text())["metadata"]
    assert meta["task"]["env_id"] == "vqbet/MultiReach-v0"
    assert meta["demonstrations"]["content_sha256"] == read_hdf5(run / "data.hdf5").content_hash()
    alone = tmp_path / "copied" / "best"  # a checkpoint copied on its own, no run folder, no dataset
    alone.parent.mkdir()
    shutil.copytree(best, alone)
    cfg = config(
        tmp_path,
        "",
        f"checkpoint={alone}",
        f"out={tmp_path / 'ev'}",
        "eval.episodes=2",
        "eval.num_envs=2",
        "eval.video_episodes=0",
        "task=pusht",
        name="eval",
    )
    cfg["task"]["dataset"] = str(tmp_path / "absent.hdf5")
    results = evaluate_checkpoint(cfg, task_given=False)
    assert results["env_id"] == "vqbet/MultiReach-v0" and results["expert_success_rate"] == 1.0
    with pytest.raises(ValueError, match=r"was trained on vqbet/MultiReach-v0.*allow_other_task=true"):
        evaluate_checkpoint(cfg, task_given=True)
    same = config(
        tmp_path, "", f"checkpoint={alone}", f"out={tmp_path / 'ev2'}", "eval.episodes=1", name="eval"
    )
    same["task"]["env_kwargs"] = {"width": 64}  # an override of the same task: not dropped for the record
    with pytest.raises(
        ValueError, match=r"task.env_kwargs.width=64 \(trained with None\) differ from the task"
    ):
        evaluate_checkpoint(same, task_given=True)
    assert not (tmp_path / "ev2").exists()
    report = write_report(
        tmp_path, {"policy": "mlp", "env_id": "x", "eval_seed": 0, "summary": results["summary"]}
    )
    assert "expert success in the demonstrations: unknown" in report.read_text()


def test_an_evaluation_with_its_own_episode_limit_ends_every_episode_there(run, tmp_path):
    best = run / "run" / "checkpoints" / "best"
    overrides = [f"checkpoint={best}", "eval.episodes=3", "eval.num_envs=3", "eval.video_episodes=0"]
    cfg = config(tmp_path, "", *overrides, f"out={tmp_path / 'ev'}", "eval.max_episode_steps=7", name="eval")
    results = evaluate_checkpoint(cfg)
    assert results["max_episode_steps"] == 7
    assert [e["length"] for e in results["episodes"]] == [7, 7, 7]  # MultiReach needs far more
    bad = config(tmp_path, "", *overrides, f"out={tmp_path / 'ev2'}", "eval.max_episode_steps=0", name="eval")
    with pytest.raises(ValueError, match="max_episode_steps must be an integer >= 1 or null, got 0"):
        evaluate_checkpoint(bad)
    assert not (tmp_path / "ev2").exists()


def test_divergence_stops_with_the_step_and_keeps_the_last_finite_checkpoint(run):
    # lr 300 with no clipping diverges within a few steps, after the first checkpoints (step 6 of a
    # smoke run when written; 3e3 diverged at step 2, before any checkpoint).
    overrides = ["train.lr=3e2", "train.grad_clip=0", "train.warmup_steps=25", "train.checkpoint_every=2"]
    with pytest.raises(
        TrainingDiverged, match=r"training diverged at step \d+: loss .*Lower train.lr"
    ) as err:
        train(config(run, "nan", *overrides))
    last = run / "nan" / "checkpoints" / "last"
    assert f"{last} holds step" in str(err.value)  # it diverged after a few steps, as such runs do
    weights = load_policy(last).state_dict().values()
    assert all(torch.isfinite(t).all() for t in weights if t.is_floating_point())


def test_non_finite_observations_raise_or_hold_the_last_finite_one():
    policy = MLPPolicy(MLPConfig(obs_dim=2, action_dim=2, obs_window=2, action_chunk=2)).eval()
    obs = np.zeros((3, 2), np.float32)
    bad = obs.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"observation of env\(s\) \[1\] holds NaN or inf"):
        policy.select_action(bad)
    policy.config.nonfinite_obs = "hold"
    policy.reset()
    with pytest.raises(ValueError, match="at the start of an episode"):
        policy.select_action(bad)
    policy.select_action(obs)
    with pytest.warns(RuntimeWarning, match="acting on the last finite one"):
        held = policy.select_action(bad)
    assert torch.isfinite(held).all()
    policy.select_action(bad)  # warned once only (pytest's filter turns a second warning into no error)


def test_a_nan_action_ends_the_episode_unstable_without_mujoco_noise(capfd):
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make("vqbet/PushT-v0", disable_env_checker=True)
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(np.array([np.nan, 0.0]))
    assert terminated and info["unstable"] and not info["is_success"] and np.isfinite(obs).all()
    assert "WARNING" not in capfd.readouterr().out


def test_dataset_outliers_and_broken_files_are_named(tmp_path):
    rng = np.random.default_rng(0)
    good = EpisodeData(
        obs=rng.normal(size=(500, 3)), action=rng.normal(size=(500, 2)), episode_ends=[200, 500]
    )
    check_outliers(good, 1000)
    noisy = good.obs.copy()
    noisy[:, 1] = rng.uniform(-3e-5, 3e-5, 500)  # a resting object's velocity: sensor noise ...
    noisy[[50, 51], 1] = 1.5  # ... and the moment the arm knocks it: data, not an outlier
    check_outliers(EpisodeData(obs=noisy, action=good.action, episode_ends=[200, 500]), 1000)
    good.obs[321, 2] = 1e30
    good.source = "demo.hdf5"
    with pytest.raises(ValueError, match=r"demo.hdf5: 'obs' row 321, column 2 holds 1e\+30"):
        check_outliers(good, 1000)
    with h5py.File(tmp_path / "group.hdf5", "w") as f:
        f.create_group("obs")
        f["action"], f["episode_ends"] = np.zeros((3, 2), "f4"), np.array([3])
    with pytest.raises(ValueError, match="'obs' must be an array \\(an HDF5 dataset\\), got an HDF5 Group"):
        read_hdf5(tmp_path / "group.hdf5")
    with h5py.File(tmp_path / "forged.hdf5", "w") as f:  # 2 KB declaring 400M rows
        f.create_dataset("obs", shape=(400_000_000, 6), dtype="f4")
        f.create_dataset("action", shape=(400_000_000, 2), dtype="f4")
        f["episode_ends"] = np.array([400_000_000])
    assert (tmp_path / "forged.hdf5").stat().st_size < 10_000
    with pytest.raises(ValueError, match=r"declares shape \(400000000, 6\).*stores 0 bytes"):
        read_hdf5(tmp_path / "forged.hdf5")


def test_policy_checkpoints_with_bad_configs_are_named(tmp_path):
    path = MLPPolicy(MLPConfig()).save_pretrained(tmp_path / "mlp")
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "policy": {**meta["policy"], "widht": 3}}))
    with pytest.raises(ValueError, match=r"config.json: unknown MLPConfig keys \['widht'\]"):
        load_policy(path)
    (path / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "policy"}))
    with pytest.raises(ValueError, match="key 'policy' is missing"):
        load_policy(path)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_writers_are_cleaned(tmp_path):
    final = tmp_path / "last"
    write_folder(final, json_files={"config.json": {"v": 1}}, tensor_files={})
    pid = dead_pid()
    (tmp_path / f".last.tmp-{pid}-abc").mkdir()
    (tmp_path / f".data.hdf5.tmp-{pid}-write").write_bytes(b"x" * 100)
    live = tmp_path / f".last.tmp-{os.getpid()}-live"
    live.mkdir()
    write_folder(final, json_files={"config.json": {"v": 2}}, tensor_files={})
    write_hdf5(
        tmp_path / "data.hdf5", EpisodeData(obs=np.zeros((2, 1)), action=np.zeros((2, 1)), episode_ends=[2])
    )
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [live.name, "data.hdf5", "last"]  # a live writer's temporary stays
    # A kill between the two renames of the fallback swap leaves `last` missing: recovered.
    os.replace(final, tmp_path / f".last.old-{pid}")
    assert atomic.recover(final) is not None and json.loads((final / "config.json").read_text()) == {"v": 2}


WRITER = """
import sys, torch
from vqbet.io import atomic
from vqbet.io.checkpoint import write_folder
if sys.argv[2] == "fallback":
    atomic._RENAMEAT2 = None
base = int(sys.argv[3])
for v in range(base + 1, base + 100000):
    blob = torch.full((200_000,), float(v))
    tensors = {"w.safetensors": {"w": blob}}
    write_folder(sys.argv[1], json_files={"config.json": {"v": v}}, tensor_files=tensors)
"""


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_sigkill_at_random_points_of_the_swap_never_loses_the_checkpoint(tmp_path, mode):
    from safetensors.torch import load_file

    final = tmp_path / "ckpt"
    rng = random.Random(0)

    def version() -> int:
        try:
            return json.loads((final / "config.json").read_text())["v"]
        except FileNotFoundError:  # none written yet, or (polling a live fallback writer) between
            return 0  # its two renames; after `recover` a missing checkpoint fails the asserts

    for i in range(5):
        base = 100_000 * i
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final), mode, str(base)], env=ENV)
        try:
            deadline = time.time() + 60
            while version() <= base and time.time() < deadline:  # this writer has swapped once
                time.sleep(0.01)
            time.sleep(rng.random() * 0.3)  # somewhere in its stream of writes and swaps
        finally:  # never leave the writer running (it would write for minutes)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        atomic.recover(final)
        assert version() > base
        assert load_file(str(final / "w.safetensors"))["w"][0].item() == version()  # one whole version
    atomic.clean_stale(final)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_the_script_exits_non_zero_with_the_message_and_no_traceback(tmp_path):
    command = [
        sys.executable,
        "scripts/train.py",
        "experiment=smoke",
        f"run_dir={tmp_path / 'r'}",
        "train.steps=0",
    ]
    out = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "steps must be an integer >= 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r").exists()


def test_a_second_writer_of_a_run_folder_is_refused_with_the_holder_named(run):
    """Another process holds the run folder (as a training run would): training and evaluation
    into it are refused, naming that process; nothing of theirs is written; after it ends the
    folder is free again, and a folder made only to hold the lock is removed."""
    from vqbet.io.run_dir import RunFolderBusy, writer_lock

    folder = run / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vqbet.io.run_dir import writer_lock\n"
            f"with writer_lock({str(folder)!r}, 'training'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"busy is being written by training \(pid {holder.pid} on "):
            train(config(run, "busy"))
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no config.yaml, no checkpoint
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"), writer_lock(folder, "evaluation"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(folder, "evaluation") as held:  # the kernel dropped the killed holder's lock
        assert (held / ".lock").read_text().startswith("evaluation (pid ")
    fresh = run / "never-written"
    with writer_lock(fresh, "training"):
        assert fresh.is_dir()
    assert not fresh.exists()
