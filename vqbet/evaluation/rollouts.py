"""Vectorised, seeded rollouts of any policy with `reset(done)` / `select_action(obs)`.

The simulator stays on the CPU in a `gymnasium.vector.SyncVectorEnv` (or AsyncVectorEnv for
expensive envs); the policy is called once per step for the whole batch. Episode i runs on seed
`seed + i`, so results are reproducible and disjoint from the demonstration seeds when `seed` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from vqbet.evaluation.metrics import summarize


class Actor(Protocol):
    """What evaluation needs of a policy (any vqbet Policy, or a scripted expert behind it)."""

    def reset(self, done: np.ndarray | None = None) -> None: ...

    def select_action(self, obs: np.ndarray) -> Any: ...


def _episode_record(
    info: dict[str, Any], index: int, seed: int, length: int, progress_keys: tuple[str, ...]
) -> dict[str, Any]:
    """One environment's final info (from a vector info dict) -> a flat record with the task's
    `progress_keys`."""

    def get(key: str) -> Any:
        if key in info and info.get(f"_{key}", np.ones(index + 1, bool))[index]:
            return info[key][index]
        return None

    unstable = bool(get("unstable") or False)
    record: dict[str, Any] = {
        "seed": seed,
        "success": bool(get("is_success") or False) and not unstable,
        "length": length,
        "unstable": unstable,
    }
    for key in progress_keys:
        value = get(key)
        if value is not None:
            record[key] = value.item() if isinstance(value, np.generic) else value
    order = get("order")
    if order is not None:
        record["order"] = [list(o) if isinstance(o, tuple) else int(o) for o in order]
    return record


def _task_attr(envs: gym.vector.VectorEnv, name: str, default: Any) -> Any:
    """A class attribute the task declares (`num_modes`, `progress_keys`), through any wrappers."""
    try:
        return envs.get_attr(name)[0]
    except AttributeError:
        return default


def _merge(finished: np.ndarray, new: Any, old: Any) -> Any:
    """Rows (B,) of `new` where `finished`, of `old` elsewhere; arrays or dicts of arrays (cameras)."""
    if isinstance(new, dict):
        return {key: _merge(finished, new[key], old[key]) for key in new}
    return np.where(finished.reshape(-1, *[1] * (np.ndim(new) - 1)), new, old)


def evaluate(
    policy: Actor,
    make_env: Callable[[], gym.Env],
    n_episodes: int,
    seed: int,
    *,
    num_envs: int = 50,
    asynchronous: bool = False,
    progress: bool = True,
    on_step: Callable[[np.ndarray, list[int]], None] | None = None,
) -> dict[str, Any]:
    """Roll `policy` out for `n_episodes` episodes (seeds seed..seed+n-1) in `num_envs` parallel
    envs (at most n_episodes; many envs amortise the policy's per-call overhead over a larger
    batch: see benchmarks/bench_policy.py). Returns {"episodes": [records], "summary": summarize(...)}.
    Each record keeps the info keys the task declares in `progress_keys`. An episode the
    simulator flags unstable counts as a failure and the evaluation goes on.
    `on_step(frames_source_obs, episode_ids)` lets a caller record videos."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    num_envs = min(num_envs, n_episodes)
    vector_cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    envs = vector_cls([make_env] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    num_modes = _task_attr(envs, "num_modes", None)
    progress_keys = tuple(_task_attr(envs, "progress_keys", ()))
    records: list[dict[str, Any] | None] = [None] * n_episodes
    episode_of = list(range(num_envs))  # which episode each env is running (-1: idle)
    next_episode = num_envs
    lengths = np.zeros(num_envs, dtype=int)
    obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
    policy.reset()
    bar = tqdm(total=n_episodes, desc="evaluate", disable=None if progress else True, dynamic_ncols=True)
    try:
        while any(e >= 0 for e in episode_of):
            action = policy.select_action(obs)
            if isinstance(action, torch.Tensor):
                action = action.detach().cpu().numpy()
            if on_step is not None:
                on_step(obs, episode_of)
            obs, _, terminated, truncated, info = envs.step(np.asarray(action, dtype=np.float32))
            lengths += 1
            finished = terminated | truncated
            if not finished.any():
                continue
            reseeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(finished):
                i = int(i)
                if episode_of[i] >= 0:
                    records[episode_of[i]] = _episode_record(
                        info, i, seed + episode_of[i], int(lengths[i]), progress_keys
                    )
                    bar.update()
                # DISABLED autoreset: a finished env must be reset before it can step again.
                if next_episode < n_episodes:
                    episode_of[i], reseeds[i] = next_episode, seed + next_episode
                    next_episode += 1
                else:  # idle until the others finish; its steps are ignored
                    episode_of[i], reseeds[i] = -1, seed + n_episodes + i
                lengths[i] = 0
            policy.reset(finished)
            new_obs, _ = envs.reset(seed=reseeds, options={"reset_mask": finished})
            obs = _merge(finished, new_obs, obs)
    finally:
        bar.close()
        envs.close()
    done_records = [r for r in records if r is not None]
    return {"episodes": done_records, "summary": summarize(done_records, num_modes)}
