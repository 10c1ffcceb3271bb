"""Kitchen on CPU MuJoCo (gymnasium SyncVectorEnv, as `evaluate` runs it) against MuJoCo Warp (envs.warp):
env steps/s with random actions and with a VQ-BeT policy in the loop, and end-to-end episodes/s of
an evaluation, each Warp row with its ratio against the CPU reference measured in the same run.

    python benchmarks/bench_warp.py                       # everything; Warp rows need a CUDA device
    python benchmarks/bench_warp.py --worlds 1 64 1024 8192 --episodes 100 10000 --cpu-envs 1 64

The policy is an untrained VQ-BeT with Kitchen's shapes (obs 59, action 9, To 10, Ta 10, 5 executed
per chunk, configs/task/kitchen.yaml): it completes nothing, so every episode runs its 600 steps and
episodes/s is comparable between sides. Without a CUDA device the Warp rows say so and are not run
(Warp's CPU device steps one world after another: tests/envs/test_warp_kitchen.py uses it for
correctness, not speed). The first Warp run compiles kernels for minutes (cached after).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from vqbet.evaluation.batched import evaluate_batched
from vqbet.evaluation.rollouts import evaluate
from vqbet.pipeline import env_factory
from vqbet.policies import VQBeTConfig, VQBeTPolicy
from vqbet.tokenizers.rvq import ActionTokenizer

ENV_ID = "vqbet/Kitchen-v0"
CPU_EVAL_ENVS = 50
"""The CPU side of the end-to-end rows: `evaluate`'s default vector env size."""


def kitchen_policy(device: torch.device) -> VQBeTPolicy:
    """An untrained VQ-BeT with the Kitchen task's shapes, normalisers fitted on random data."""
    torch.manual_seed(0)
    tokenizer = ActionTokenizer(action_dim=9, chunk_size=10, num_layers=2, codebook_size=16)
    tokenizer.normalizer.fit(torch.randn(1000, 9))
    config = VQBeTConfig(obs_dim=59, action_dim=9, obs_window=10, action_chunk=10, execute_steps=5)
    policy = VQBeTPolicy(config, tokenizer)
    policy.obs_normalizer.fit(torch.randn(1000, 59))
    policy.freeze_statistics()
    return policy.to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Env steps/s of `step` (one batched step of every env) over `steps` calls after one warm-up."""
    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def cpu_rates(num_envs: int, steps: int, policy: VQBeTPolicy) -> tuple[float, float]:
    """(random-action, policy-in-the-loop) env steps/s of a SyncVectorEnv of `num_envs` CPU envs."""
    envs = gym.vector.SyncVectorEnv([env_factory(ENV_ID)] * num_envs)
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    policy.reset()
    state = {"obs": obs}

    def random_step() -> None:
        envs.step(rng.uniform(-1, 1, (num_envs, 9)).astype(np.float32))

    def policy_step() -> None:
        action = policy.select_action(state["obs"]).cpu().numpy()
        state["obs"] = envs.step(action)[0]

    cpu = torch.device("cpu")
    rates = steps_per_second(random_step, steps, cpu), steps_per_second(policy_step, steps, cpu)
    envs.close()
    return tuple(r * num_envs for r in rates)


def warp_rates(num_envs: int, steps: int, policy: VQBeTPolicy) -> tuple[float, float]:
    """The same for `num_envs` MuJoCo Warp worlds, actions and observations staying on the GPU."""
    from envs.warp import make_vector_env

    envs = make_vector_env(ENV_ID, num_envs, device="cuda:0")
    obs, _ = envs.reset(seed=0)
    policy.reset()
    state = {"obs": obs}

    def random_step() -> None:
        envs.step(torch.rand(num_envs, 9, device=envs.device) * 2 - 1)

    def policy_step() -> None:
        state["obs"] = envs.step(policy.select_action(state["obs"]))[0]

    rates = (
        steps_per_second(random_step, steps, envs.device),
        steps_per_second(policy_step, steps, envs.device),
    )
    envs.close()
    return tuple(r * num_envs for r in rates)


def episodes_per_second(backend: str, episodes: int, worlds: int, policy: VQBeTPolicy) -> float:
    """End-to-end episodes/s of evaluating `policy` for `episodes` episodes (env creation included)."""
    start = time.perf_counter()
    if backend == "cpu":
        evaluate(policy, env_factory(ENV_ID), episodes, 0, num_envs=CPU_EVAL_ENVS, progress=False)
    else:
        from envs.warp import make_vector_env

        envs = make_vector_env(ENV_ID, min(worlds, episodes), device="cuda:0", autoreset_mode="Disabled")
        evaluate_batched(policy, envs, episodes, 0, progress=False)
        envs.close()
    return episodes / (time.perf_counter() - start)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument("--cpu-envs", type=int, nargs="+", default=[1, 64], help="CPU vector env sizes")
    parser.add_argument("--steps", type=int, default=20, help="timed env steps per row")
    parser.add_argument("--episodes", type=int, nargs="+", default=[100, 10000])
    parser.add_argument("--eval-worlds", type=int, default=1024, help="Warp worlds of the end-to-end rows")
    parser.add_argument(
        "--cpu-max-episodes", type=int, default=100, help="longer CPU evaluations are not run"
    )
    args = parser.parse_args()

    warp_device = None
    try:
        import warp

        warp.config.log_level = warp.LOG_WARNING
        warp.init()
        warp_device = "cuda:0" if warp.is_cuda_available() else None
    except ImportError:
        print('MuJoCo Warp is not installed (pip install "vqbet[warp]"): Warp rows not run')
    gpu = torch.device("cuda:0") if torch.cuda.is_available() and warp_device else torch.device("cpu")
    policy_cpu, policy_gpu = kitchen_policy(torch.device("cpu")), kitchen_policy(gpu)
    print(
        f"torch {torch.__version__}; Warp device: {warp_device or 'none (the Warp rows need a CUDA device)'}"
    )

    print("\n| side | envs | env steps/s, random actions | with VQ-BeT in the loop |")
    print("|---|---|---|---|")
    reference = None
    for n in args.cpu_envs:
        random_rate, policy_rate = cpu_rates(n, args.steps, policy_cpu)
        reference = (random_rate, policy_rate)  # the largest CPU vector env: CPU throughput saturates
        print(f"| CPU MuJoCo | {n} | {_number(random_rate)} | {_number(policy_rate)} |", flush=True)
    for n in args.worlds:
        if warp_device is None:
            print(f"| MuJoCo Warp | {n} | needs a CUDA device (not measured) | - |")
            continue
        random_rate, policy_rate = warp_rates(n, args.steps, policy_gpu)
        ratio = f" ({random_rate / reference[0]:.1f}x)" if reference else ""
        ratio_policy = f" ({policy_rate / reference[1]:.1f}x)" if reference else ""
        print(f"| MuJoCo Warp | {n} | {_number(random_rate)}{ratio} | {_number(policy_rate)}{ratio_policy} |")
    print("(ratios against the last CPU row, the largest CPU vector env)")

    print("\n| evaluation episodes | CPU episodes/s | Warp episodes/s | ratio |")
    print("|---|---|---|---|")
    for episodes in args.episodes:
        cpu_rate = None
        if episodes <= args.cpu_max_episodes:
            cpu_rate = episodes_per_second("cpu", episodes, CPU_EVAL_ENVS, policy_cpu)
        warp_rate = None
        if warp_device is not None:
            warp_rate = episodes_per_second("warp", episodes, args.eval_worlds, policy_gpu)
        ratio = f"{warp_rate / cpu_rate:.1f}x" if cpu_rate and warp_rate else "-"
        cpu_text = (
            _number(cpu_rate) if cpu_rate else f"not run (> --cpu-max-episodes {args.cpu_max_episodes})"
        )
        warp_text = _number(warp_rate) if warp_rate else "needs a CUDA device (not measured)"
        print(f"| {episodes:,} | {cpu_text} | {warp_text} | {ratio} |", flush=True)
    print(f"(CPU: evaluate() over {CPU_EVAL_ENVS} envs; Warp: min(episodes, {args.eval_worlds}) worlds)")


if __name__ == "__main__":
    main()
