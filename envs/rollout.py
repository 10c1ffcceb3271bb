"""Run a task's scripted expert for one seeded episode (numpy only: no torch needed to collect)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.experts import make_expert


def expert_episode(env: gym.Env, seed: int, images: bool = False) -> dict[str, Any]:
    """One episode of `env`'s expert, env and expert seeded by `seed`.

    Returns {"obs": (T, D) float32, "action": (T, A) float32, "image": (T, H, W, 3) uint8 (with
    `images`), "success": bool, "order": tuple, "mode": tuple, "length": T, "info": final info}.
    """
    obs, info = env.reset(seed=seed)
    expert = make_expert(env, seed)
    expert.reset()
    observations, actions, frames = [], [], []
    while True:
        action = np.asarray(expert.act(obs), dtype=np.float32)
        observations.append(np.asarray(obs, dtype=np.float32))
        actions.append(action)
        if images:
            frames.append(env.render())
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    episode: dict[str, Any] = {
        "obs": np.stack(observations),
        "action": np.stack(actions),
        "success": bool(info.get("is_success", False)),
        "order": tuple(info.get("order", ())),
        "mode": tuple(expert.mode),
        "length": len(actions),
        "info": info,
    }
    if images:
        episode["image"] = np.stack(frames).astype(np.uint8)
    return episode
