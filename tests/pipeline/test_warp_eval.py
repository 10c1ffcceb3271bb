"""eval.backend: the configuration and its errors (default suite), and the same report from both
backends (marked warp: it steps MuJoCo Warp on its CPU device)."""

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.pipeline import evaluate_and_report
from vqbet.pipeline.config import EvalConfig
from vqbet.pipeline.warp_backend import check_backend
from vqbet.policies import MLPConfig, MLPPolicy


def test_the_backend_is_checked_and_an_unsupported_task_is_named():
    with pytest.raises(ValueError, match=r"backend must be one of \['cpu', 'warp'\], got 'gpu'"):
        EvalConfig(backend="gpu")
    with pytest.raises(ValueError, match=r"vqbet/PushT-v0: no MuJoCo Warp backend"):
        check_backend(EvalConfig(backend="warp"), "vqbet/PushT-v0")
    check_backend(EvalConfig(backend="cpu"), "vqbet/PushT-v0")  # the CPU backend runs every task
    check_backend(EvalConfig(backend="warp"), "vqbet/Kitchen-v0")


def test_a_training_run_names_an_unsupported_warp_task_before_it_starts():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from vqbet.pipeline import build_policy, check_run_config

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        pusht = compose("train", overrides=["task=pusht", "policy=mlp", "+eval.backend=warp"])
        kitchen = compose("train", overrides=["task=kitchen", "policy=mlp", "+eval.backend=warp"])
    with pytest.raises(ValueError, match=r"nothing was started(.|\n)*vqbet/PushT-v0: no MuJoCo Warp backend"):
        check_run_config(OmegaConf.to_container(pusht, resolve=True), build_policy)
    run = check_run_config(OmegaConf.to_container(kitchen, resolve=True), build_policy)
    assert run.eval.backend == "warp"


def _kitchen_policy() -> MLPPolicy:
    """A small untrained MLP with Kitchen's shapes (obs 59, action 9), statistics from noise."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    episodes = [
        {
            "obs": rng.normal(size=(8, 59)).astype(np.float32),
            "action": rng.uniform(-1, 1, (8, 9)).astype(np.float32),
        }
        for _ in range(4)
    ]
    policy = MLPPolicy(MLPConfig(obs_dim=59, action_dim=9, obs_window=2, action_chunk=2, hidden=32, depth=1))
    policy.fit_statistics(
        TrajectoryWindows(EpisodeData.from_episodes(episodes), obs_window=2, action_chunk=2)
    )
    return policy.eval()


@pytest.mark.warp
def test_both_backends_write_the_same_report(tmp_path):
    policy = _kitchen_policy()
    results = {}
    for backend in ("cpu", "warp"):
        config = EvalConfig(episodes=3, num_envs=2, video_episodes=2, backend=backend)
        out = tmp_path / backend
        env_kwargs = {"max_episode_steps": 4}  # gym.make and the Warp env take the same limit
        results[backend] = evaluate_and_report(
            policy, "vqbet/Kitchen-v0", config, out, {}, env_kwargs=env_kwargs
        )
        assert {p.name for p in out.iterdir()} >= {"results.json", "report.md", "rollouts.mp4"}
        frames = imageio.mimread(out / "rollouts.mp4")
        assert len(frames) == 5 and frames[0].shape == (96, 192, 3)  # the start + 4 steps, 2 tiles
        assert json.loads((out / "results.json").read_text())["backend"]["name"] == backend
    cpu, warp = results["cpu"], results["warp"]
    assert cpu["summary"].keys() == warp["summary"].keys()
    for a, b in zip(cpu["episodes"], warp["episodes"], strict=True):
        assert a.keys() == b.keys() and a["seed"] == b["seed"] and a["length"] == b["length"] == 4
    assert warp["backend"] == {"name": "warp", "device": "cpu", "num_envs": 2}
