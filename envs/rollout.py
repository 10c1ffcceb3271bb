"""Run a task's scripted expert for one seeded episode (numpy only: no torch needed to collect)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.experts import make_expert


def check_perturbation(perturb: float, perturb_hold: int) -> None:
    """Refuse a negative noise std or a hold shorter than one step."""
    if perturb < 0 or perturb_hold < 1:
        raise ValueError(f"perturb must be >= 0 and perturb_hold >= 1, got {perturb}, {perturb_hold}")


def expert_episode(
    env: gym.Env, seed: int, images: bool = False, perturb: float = 0.0, perturb_hold: int = 1
) -> dict[str, Any]:
    """One episode of `env`'s expert, env and expert seeded by `seed`.

    `perturb` > 0 collects DART-style demonstrations (Laskey et al. 2017): the env executes the
    expert's action plus Gaussian noise of that standard deviation (a fresh draw every
    `perturb_hold` steps, so the offsets push the state off the expert's path), while the dataset
    records the expert's clean action. The demonstrations then show how the expert recovers from
    the errors a learnt policy makes. The noise has its own generator, seeded by `seed`.

    An env observing cameras (obs_mode "pixels" / "pixels+agent", a dict) records its "state"
    entry (empty for "pixels") as obs, every camera's frames, and the full state the expert acts
    on (`state_vector()`) as "env_state", a training target for image encoders. `images` also
    records `env.render()` as camera "image".

    Returns {"obs": (T, D) float32, "action": (T, A) float32, "images": {camera: (T, H, W, 3)
    uint8}, "env_state": (T, S) float32 or None (state observations), "success": bool, "order":
    tuple, "mode": tuple, "length": T, "info": final info}.
    """
    check_perturbation(perturb, perturb_hold)
    obs, info = env.reset(seed=seed)
    expert = make_expert(env, seed)
    expert.reset()
    noise_rng = np.random.default_rng([seed, 0xDA27])
    low, high = env.action_space.low, env.action_space.high
    offset = np.zeros(env.action_space.shape, dtype=np.float32)
    observations, actions, env_states = [], [], []
    frames: dict[str, list[np.ndarray]] = {}
    while True:
        state = obs
        if isinstance(obs, dict):
            state = obs.get("state", np.zeros(0))
            for camera in obs.keys() - {"state"}:
                frames.setdefault(camera, []).append(obs[camera])
            obs = env.unwrapped.state_vector()
            env_states.append(np.asarray(obs, dtype=np.float32))
        action = np.asarray(expert.act(obs), dtype=np.float32)
        observations.append(np.asarray(state, dtype=np.float32))
        actions.append(action)
        if images:
            frames.setdefault("image", []).append(env.render())
        if perturb > 0:
            if (len(actions) - 1) % perturb_hold == 0:
                offset = noise_rng.normal(0.0, perturb, action.shape).astype(np.float32)
            action = np.clip(action + offset, low, high)
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
        "images": {camera: np.stack(f).astype(np.uint8) for camera, f in frames.items()},
        "env_state": np.stack(env_states) if env_states else None,
    }
    return episode
