"""Training without a simulator (task=dataset): from every format, offline metrics on held-out
episodes, a checkpoint that acts, and the offline metrics themselves on a two-mode dataset."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from policy_helpers import fitted_policy, two_mode_data

from vqbet.data import EpisodeData, TrajectoryWindows, export_lerobot, write_hdf5
from vqbet.evaluation.offline import evaluate_offline
from vqbet.pipeline import evaluate_checkpoint, train
from vqbet.policies import load_policy

ROOT = Path(__file__).resolve().parents[2]


def demonstrations() -> EpisodeData:
    """20 episodes of a 4-D state and 3-D action (dims no task of ours has)."""
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(20):
        steps = np.cumsum(rng.normal(0, 0.1, size=(30, 3)), axis=0).astype(np.float32)
        obs = np.concatenate([steps, np.sin(steps[:, :1])], axis=1).astype(np.float32)
        episodes.append({"obs": obs, "action": np.roll(steps, -1, axis=0)})
    return EpisodeData.from_episodes(episodes)


def write(kind: str, data: EpisodeData, root: Path) -> tuple[Path, list[str]]:
    """`data` in format `kind`; returns the path and the overrides naming its keys."""
    if kind == "hdf5":
        return write_hdf5(root / "ours.hdf5", data), []
    if kind == "lerobot":
        pytest.importorskip("pyarrow")
        return export_lerobot(data, root / "lerobot", fps=10), []
    if kind == "robomimic":
        path = root / "robomimic.hdf5"
        with h5py.File(path, "w") as f:
            for e in range(data.num_episodes):
                s, t = data.episode_starts[e], data.episode_ends[e]
                f[f"data/demo_{e}/actions"] = data.action[s:t]
                f[f"data/demo_{e}/obs/joints"] = data.obs[s:t, :3]
                f[f"data/demo_{e}/obs/phase"] = data.obs[s:t, 3:]
        return path, ["+task.obs_keys=[joints,phase]"]
    if kind == "zarr":
        zarr = pytest.importorskip("zarr")
        group = zarr.open_group(str(root / "replay.zarr"), mode="w", zarr_format=2)
        group.create_array("data/state", data=data.obs)
        group.create_array("data/action", data=data.action)
        group.create_array("meta/episode_ends", data=data.episode_ends)
        return root / "replay.zarr", []
    pytest.importorskip("minari")
    from vqbet.data.formats.minari import export_minari

    return export_minari(data, "vqbet/offline-v0", root=root), []


def config(root: Path, dataset: Path, *overrides: str) -> dict:
    base = ["experiment=smoke", "task=dataset", f"task.dataset={dataset}", f"run_dir={root / 'run'}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*base, "data.val_fraction=0.2", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("kind", ["hdf5", "lerobot", "robomimic", "zarr", "minari"])
def test_train_without_a_simulator_from_every_format(tmp_path, kind):
    data = demonstrations()
    path, keys = write(kind, data, tmp_path)
    results = train(config(tmp_path, path, *keys))
    run = tmp_path / "run"
    assert results["mode"] == "offline" and results["evaluated_on"] == "4 held-out episodes"
    metrics = json.loads((run / "results.json").read_text())["offline"]
    assert metrics["windows"] == 4 * 30 and 0 < metrics["best_of_10_mse"] <= metrics["greedy_mse"] + 1e-9
    assert {"code_accuracy/0", "code_accuracy/1", "reconstruction_mse", "used_fraction/1"} <= set(metrics)
    assert "offline: no simulator" in (run / "report.md").read_text() and (run / "curves.png").is_file()
    policy = load_policy(run / "checkpoints" / "best")
    assert (policy.config.obs_dim, policy.config.action_dim) == (4, 3)  # from the data
    assert policy.select_action(data.obs[:2]).shape == (2, 3)


def test_train_without_a_simulator_from_two_cameras(tmp_path):
    """A robomimic file with two cameras: task.image_keys names them, the policy sees both at the
    data's size, the offline evaluation and the checkpoint act on dict observations."""
    data = demonstrations()
    path = tmp_path / "cameras.hdf5"
    bright = np.clip(((data.obs[:, 0] - data.obs[:, 0].min()) * 8).astype(int), 0, 23)
    with h5py.File(path, "w") as f:
        for e in range(data.num_episodes):
            s, t = data.episode_starts[e], data.episode_ends[e]
            f[f"data/demo_{e}/actions"] = data.action[s:t]
            f[f"data/demo_{e}/obs/joints"] = data.obs[s:t]
            for k, name in enumerate(["agentview_image", "eye_in_hand_image"]):
                frames = np.zeros((t - s, 24, 24, 3), np.uint8)
                frames[np.arange(t - s), bright[s:t], 4 + 8 * k] = 255
                f[f"data/demo_{e}/obs/{name}"] = frames
    cameras = [
        "task.image_keys={top: agentview_image, wrist: eye_in_hand_image}",
        "task.cameras=[top,wrist]",
    ]
    results = train(config(tmp_path, path, *cameras))
    assert results["mode"] == "offline" and results["offline"]["windows"] == 4 * 30
    policy = load_policy(tmp_path / "run" / "checkpoints" / "best")
    vision = policy.config.vision
    assert (vision.cameras, vision.image_size, vision.crop) == (["top", "wrist"], [24, 24], [21, 21])
    frames = {c: np.zeros((2, 24, 24, 3), np.uint8) for c in vision.cameras}
    assert policy.select_action({"state": data.obs[:2], **frames}).shape == (2, 3)
    with pytest.raises(ValueError, match=r"task.cameras \['side'\] are not in the data, which has cameras"):
        train(config(tmp_path, path, cameras[0], "task.cameras=[top,side]"))


def test_the_script_and_eval_of_an_offline_checkpoint(tmp_path):
    path, _ = write("hdf5", demonstrations(), tmp_path)
    command = [sys.executable, "scripts/train.py", "experiment=smoke", "task=dataset", f"task.dataset={path}"]
    command += [f"run_dir={tmp_path / 'run'}", "policy=mlp"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mlp offline: greedy chunk normalised MSE" in out.stdout
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "eval", overrides=[f"checkpoint={tmp_path / 'run/checkpoints/best'}", f"out={tmp_path / 'ev'}"]
        )
    results = evaluate_checkpoint(OmegaConf.to_container(cfg, resolve=True))
    assert results["evaluated_on"] == f"all 20 episodes of {path}" and results["offline"]["windows"] == 600
    missing = subprocess.run(
        [*command[:4], f"task.dataset={tmp_path / 'nope.hdf5'}", f"run_dir={tmp_path / 'r2'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_best_of_n_credits_a_multimodal_policy_that_the_greedy_error_does_not(tmp_path):
    """Up/down demonstrations from one start: at the start a sampling policy's best sample is
    right where its greedy chunk is wrong for half the episodes."""
    policy, _ = fitted_policy(tmp_path, steps=300)
    data = two_mode_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=4)
    starts = torch.utils.data.Subset(windows, data.episode_starts.tolist())  # window i: global step i
    metrics = evaluate_offline(policy, starts, samples=10)
    assert metrics["windows"] == data.num_episodes
    assert metrics["greedy_nmse"] > 0.5 and metrics["best_of_10_nmse"] < 0.2 * metrics["greedy_nmse"]
    assert evaluate_offline(policy, starts, samples=10) == metrics  # seeded: the same numbers again
