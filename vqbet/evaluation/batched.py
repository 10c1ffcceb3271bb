"""Seeded rollouts on a batched vector env whose observations, actions and info are torch tensors on
one device (MuJoCo Warp: envs.warp), with the records and summary of `rollouts.evaluate`.

The vector env runs with autoreset DISABLED: a world whose episode ends starts the next pending
episode (seed `seed + episode`) through `reset(options={"reset_mask": ...})`, as in `evaluate`, so
episode i runs on seed `seed + i` whatever the world count. Only the rows of the worlds that finish
are copied to the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from vqbet.evaluation.metrics import summarize
from vqbet.evaluation.report import tile
from vqbet.evaluation.rollouts import Actor, _episode_record


def _host_rows(info: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The info rows (K,) of finished worlds, as numpy; "order" (K, k) padded with -1 becomes a list
    of tuples, as the CPU envs report it."""
    index = torch.as_tensor(rows, dtype=torch.long)
    host: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, torch.Tensor):
            value = value[index.to(value.device)].cpu().numpy()
        elif isinstance(value, np.ndarray):
            value = value[rows]
        host[key] = value
    if "order" in host:
        orders = np.empty(len(rows), dtype=object)
        orders[:] = [tuple(int(x) for x in row if x >= 0) for row in host["order"]]
        host["order"] = orders
    return host


def evaluate_batched(
    policy: Actor,
    envs: Any,
    n_episodes: int,
    seed: int,
    *,
    progress: bool = True,
    on_step: Callable[[np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Roll `policy` out for `n_episodes` episodes (seeds seed..seed+n-1) in the `envs.num_envs`
    worlds of `envs` (autoreset DISABLED). Returns {"episodes": [records], "summary": ...} as
    `rollouts.evaluate` does. `on_step(episode_of)` is called after the reset and after every step,
    before finished worlds restart; episode_of (num_envs,) is the episode each world runs (-1: idle)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if envs.metadata.get("autoreset_mode") != AutoresetMode.DISABLED:
        raise ValueError("evaluate_batched needs a vector env with autoreset_mode DISABLED")
    num_envs = envs.num_envs
    num_modes = getattr(envs, "num_modes", None)
    progress_keys = tuple(getattr(envs, "progress_keys", ()))
    records: list[dict[str, Any] | None] = [None] * n_episodes
    episode_of = np.arange(num_envs)
    episode_of[episode_of >= n_episodes] = -1  # more worlds than episodes: the rest idle
    next_episode = min(num_envs, n_episodes)
    lengths = np.zeros(num_envs, dtype=int)
    # Idle worlds step too (one batch), on seeds past the evaluated range.
    obs, _ = envs.reset(seed=[seed + i if i < n_episodes else seed + n_episodes + i for i in range(num_envs)])
    policy.reset()
    if on_step is not None:
        on_step(episode_of)
    bar = tqdm(total=n_episodes, desc="evaluate", disable=None if progress else True, dynamic_ncols=True)
    try:
        while (episode_of >= 0).any():
            obs, _, terminated, truncated, info = envs.step(policy.select_action(obs))
            lengths += 1
            if on_step is not None:
                on_step(episode_of)
            finished = torch.as_tensor(terminated | truncated).cpu().numpy()
            if not finished.any():
                continue
            rows = np.flatnonzero(finished)
            host = _host_rows(info, rows)
            reseeds: list[int | None] = [None] * num_envs
            for j, i in enumerate(rows.tolist()):
                if episode_of[i] >= 0:
                    record = _episode_record(
                        host, j, seed + int(episode_of[i]), int(lengths[i]), progress_keys
                    )
                    records[episode_of[i]] = record
                    bar.update()
                if next_episode < n_episodes:
                    episode_of[i], reseeds[i] = next_episode, seed + next_episode
                    next_episode += 1
                else:
                    episode_of[i], reseeds[i] = -1, seed + n_episodes + i
                lengths[i] = 0
            policy.reset(finished)
            obs, _ = envs.reset(seed=reseeds, options={"reset_mask": finished})
    finally:
        bar.close()
    done_records = [r for r in records if r is not None]
    return {"episodes": done_records, "summary": summarize(done_records, num_modes)}


class WorldVideo:
    """`on_step` for `evaluate_batched` that writes a tiled mp4 of the first `episodes` episodes
    (worlds 0..episodes-1), each frame drawn by `render(worlds) -> [(H, W, 3) uint8]`; a world
    whose episode has ended keeps its last frame."""

    def __init__(
        self,
        render: Callable[[list[int]], list[np.ndarray]],
        episodes: int,
        path: str | os.PathLike,
        fps: int = 20,
    ) -> None:
        import imageio.v2 as imageio

        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.render, self.episodes, self.path = render, episodes, Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = imageio.get_writer(self.path, fps=fps, macro_block_size=1)
        self.columns = int(np.ceil(np.sqrt(episodes)))
        self.last: list[np.ndarray] | None = None

    def __call__(self, episode_of: np.ndarray) -> None:
        worlds = [w for w in range(self.episodes) if w < len(episode_of) and episode_of[w] == w]
        if not worlds and self.last is not None:
            return
        frames = dict(zip(worlds, self.render(worlds), strict=True))
        self.last = [frames.get(w, self.last[w] if self.last else None) for w in range(self.episodes)]
        self.writer.append_data(tile(self.last, self.columns))

    def close(self) -> Path:
        self.writer.close()
        return self.path
