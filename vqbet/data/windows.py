"""Training windows over demonstrations: the dataset a behaviour transformer trains on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqbet.data.episodes import EpisodeData


def split_episodes(num_episodes: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of episode indices; validation gets round(E * fraction),
    at least one episode when fraction > 0 and E > 1."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = round(num_episodes * val_fraction)
    if val_fraction > 0 and num_episodes > 1:
        n_val = max(1, min(n_val, num_episodes - 1))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class TrajectoryWindows(Dataset):
    """Windows anchored at every step of the chosen episodes.

    Item i, anchored at step t of an episode starting at s and ending (exclusive) at e:
        "obs":         (To, D) float32, steps t-To+1 .. t; steps before s repeat step s; with
                       `cameras`, a dict {"state": (To, D), <camera>: (To, H, W, 3) uint8}
        "action":      (To, Ta, A) float32, for window step j at step u: actions u .. u+Ta-1;
                       steps at or past e repeat the episode's last action
        "action_mask": (To, Ta) bool, False where an action was padded
        "env_state":   (To, S) float32 at the obs steps, when the data holds env_state (a training
                       target for image encoders, see EpisodeData)
    Items are built with numpy on the CPU: no per-item GPU work, so DataLoader workers run (and
    read the frames of lazily stored cameras in parallel).
    """

    def __init__(
        self,
        data: EpisodeData,
        obs_window: int,
        action_chunk: int,
        episodes: Sequence[int] | np.ndarray | None = None,
        cameras: Sequence[str] = (),
    ) -> None:
        if obs_window < 1 or action_chunk < 1:
            raise ValueError(f"obs_window and action_chunk must be >= 1, got {obs_window} and {action_chunk}")
        missing = [camera for camera in cameras if camera not in data.images]
        if missing:
            raise ValueError(
                f"{data.source}: camera(s) {missing} asked for, but the dataset holds {sorted(data.images)}"
            )
        self.data = data
        self.obs_window = obs_window
        self.action_chunk = action_chunk
        self.cameras = list(cameras)
        chosen = np.arange(data.num_episodes) if episodes is None else np.asarray(episodes, dtype=int)
        if chosen.size == 0:
            raise ValueError("TrajectoryWindows: no episodes chosen")
        if chosen.min() < 0 or chosen.max() >= data.num_episodes:
            raise ValueError(f"episode indices must lie in [0, {data.num_episodes}), got {chosen}")
        self.episodes = chosen
        starts, ends = data.episode_starts[chosen], data.episode_ends[chosen]
        lengths = ends - starts
        longest = int(lengths.max())
        for name, size in (("obs_window", obs_window), ("action_chunk", action_chunk)):
            if size > longest:
                raise ValueError(
                    f"{data.source}: {name} {size} is longer than every episode chosen ({len(chosen)} "
                    f"episodes of {int(lengths.min())} to {longest} steps): every window would be "
                    f"padded; set {name} to at most {longest}"
                )
        self._anchor = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        self._start = np.repeat(starts, lengths)
        self._end = np.repeat(ends, lengths)
        self._back = np.arange(obs_window - 1, -1, -1)
        self._ahead = np.arange(action_chunk)

    def __len__(self) -> int:
        return int(self._anchor.shape[0])

    def indices(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs steps (To,), action steps (To, Ta), action mask (To, Ta)) of item i."""
        t, start, end = self._anchor[i], self._start[i], self._end[i]
        obs_idx = np.maximum(t - self._back, start)
        act_idx = obs_idx[:, None] + self._ahead[None, :]
        mask = act_idx < end
        return obs_idx, np.minimum(act_idx, end - 1), mask

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        obs_idx, act_idx, mask = self.indices(int(i) % len(self))
        obs: Any = torch.from_numpy(np.asarray(self.data.obs[obs_idx], dtype=np.float32))
        if self.cameras:
            unique, inverse = np.unique(obs_idx, return_inverse=True)  # h5py wants increasing
            obs = {"state": obs}
            for camera in self.cameras:
                obs[camera] = torch.from_numpy(np.asarray(self.data.images[camera][unique])[inverse])
        item = {
            "obs": obs,
            "action": torch.from_numpy(np.asarray(self.data.action[act_idx], dtype=np.float32)),
            "action_mask": torch.from_numpy(mask),
        }
        if self.data.env_state is not None:
            item["env_state"] = torch.from_numpy(np.asarray(self.data.env_state[obs_idx], dtype=np.float32))
        return item

    def steps(self) -> np.ndarray:
        """Global step indices of the chosen episodes, for normalisation statistics."""
        return self._anchor

    def action_chunks(self) -> np.ndarray:
        """(M, Ta, A) the action chunk starting at every step (end-padded), for phase 1."""
        act_idx = np.minimum(self._anchor[:, None] + self._ahead[None, :], self._end[:, None] - 1)
        return np.asarray(self.data.action[act_idx], dtype=np.float32)

    def anchor_obs(self) -> np.ndarray:
        """(M, D) the observation at every step, aligned with `action_chunks`."""
        return np.asarray(self.data.obs[self._anchor], dtype=np.float32)
