"""Environment benchmark: stepping, expert and rendering speed, expert success and mode entropy,
and the MLP behaviour-cloning contrast.

    python benchmarks/bench_envs.py [--episodes 200] [--tasks MultiReach BlockPush PushT] [--mlp-steps 1500]
        [--no-speed]    # expert success and orders only (the speed columns need a quiet machine)

Per task: raw env steps/s (random actions, one process), expert steps/s (expert + env), 96x96
frames/s (each checked not blank), expert success and completion-order entropy over `--episodes`
seeded episodes (PushT: also mean max coverage), and collection episodes/s with 2 processes
(vqbet.pipeline.collect). Then, per task, an MLP-BC policy (vqbet.policies.MLPPolicy) is
trained on those expert episodes and evaluated on 100 fresh seeds next to the expert: a task that
tests multimodality shows MLP-BC short of the expert in success or in order entropy.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import collections
import math
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.experts import EXPERTS
from envs.rollout import expert_episode
from vqbet.evaluation.metrics import order_entropy, wilson_interval
from vqbet.pipeline import collect, env_factory


def raw_steps_per_second(env_id: str, steps: int = 5000) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape))
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def render_fps(env_id: str, frames: int = 300) -> float:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.render()
    start = time.perf_counter()
    for _ in range(frames):
        env.step(env.action_space.sample())
        frame = env.render()
    seconds = time.perf_counter() - start
    if frame.shape != (96, 96, 3) or frame.std() < 10:
        raise RuntimeError(f"{env_id}: rendered frame is blank or misshapen: {frame.shape}")
    return frames / seconds


def mlp_contrast(env_id: str, episodes: list[dict], steps: int, eval_episodes: int = 100) -> dict:
    """Train MLP-BC on `episodes` for `steps` and evaluate it on seeds 2,000,000+: its summary."""
    import torch

    from vqbet.data import EpisodeData, TrajectoryWindows
    from vqbet.evaluation.rollouts import evaluate
    from vqbet.policies import MLPConfig, MLPPolicy
    from vqbet.training.loop import PolicyTrainConfig, train_policy

    torch.manual_seed(0)
    windows = TrajectoryWindows(EpisodeData.from_episodes(episodes), obs_window=5, action_chunk=5)
    obs_dim, action_dim = episodes[0]["obs"].shape[1], episodes[0]["action"].shape[1]
    policy = MLPPolicy(MLPConfig(obs_dim=obs_dim, action_dim=action_dim, obs_window=5, action_chunk=5))
    policy.fit_statistics(windows)
    config = PolicyTrainConfig(steps=steps, eval_every=steps, checkpoint_every=steps, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        train_policy(policy, windows, None, config, tmp, progress=False)
    policy.eval()
    return evaluate(policy, env_factory(env_id), eval_episodes, seed=2_000_000, progress=False)["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--tasks", nargs="*", default=sorted(EXPERTS))  # the tasks with an expert
    parser.add_argument("--mlp-steps", type=int, default=1500, help="MLP-BC training steps (0: skip)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed columns (printed as -)")
    args = parser.parse_args()
    expert_runs = {}
    print(
        "| task | raw steps/s | expert steps/s | 96x96 frames/s | expert success (95% CI) "
        "| orders seen | order entropy / uniform max | collect eps/s (2 procs) |"
    )
    print("|---" * 8 + "|")
    for task in args.tasks:
        env_id = f"vqbet/{task}-v0"
        raw = None if args.no_speed else raw_steps_per_second(env_id)
        fps = None if args.no_speed else render_fps(env_id)
        env = gym.make(env_id)
        start, steps, results = time.perf_counter(), 0, []
        for i in range(args.episodes):
            episode = expert_episode(env, seed=100_000 + i)
            steps += episode["length"]
            results.append(episode)
        expert_sps = steps / (time.perf_counter() - start)
        expert_runs[task] = results
        wins = [r for r in results if r["success"]]
        low, high = wilson_interval(len(wins), len(results))
        orders = [r["order"] for r in wins]
        entropy = order_entropy(orders)
        max_entropy = math.log(env.unwrapped.num_modes)
        collect_eps = None
        if not args.no_speed:
            with tempfile.TemporaryDirectory() as tmp:
                n = max(20, args.episodes // 4)
                start = time.perf_counter()
                collect(env_id, n, Path(tmp) / "d.hdf5", workers=2, progress=False)
                collect_eps = n / (time.perf_counter() - start)
        coverage = [r["info"]["max_coverage"] for r in results if "max_coverage" in r["info"]]
        extra = f", max coverage {np.mean(coverage):.3f}" if coverage else ""
        speed = "- | - | -" if args.no_speed else f"{raw:,.0f} | {expert_sps:,.0f} | {fps:,.0f}"
        print(
            f"| {task} | {speed} "
            f"| {len(wins)}/{len(results)} ({low:.2f}-{high:.2f}){extra} "
            f"| {len(collections.Counter(orders))}/{env.unwrapped.num_modes} "
            f"| {entropy:.3f} / {max_entropy:.3f} = {100 * entropy / max_entropy:.0f}% "
            f"| {'-' if collect_eps is None else f'{collect_eps:.1f}'} |",
            flush=True,
        )
    if args.mlp_steps <= 0:
        return
    print(
        f"\n| task | expert success | MLP-BC success (95% CI), 100 episodes | expert order entropy "
        f"| MLP-BC order entropy (orders) |  (MLP-BC: {args.mlp_steps} steps on the episodes above)"
    )
    print("|---" * 5 + "|")
    for task, results in expert_runs.items():
        wins = [r for r in results if r["success"]]
        mlp = mlp_contrast(f"vqbet/{task}-v0", wins, args.mlp_steps)
        print(
            f"| {task} | {len(wins) / len(results):.2f} | {mlp['success_rate']:.2f} "
            f"({mlp['success_ci95'][0]:.2f}-{mlp['success_ci95'][1]:.2f}) "
            f"| {order_entropy([r['order'] for r in wins]):.3f} "
            f"| {mlp.get('order_entropy', 0.0):.3f} ({mlp.get('distinct_orders', 0)}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
