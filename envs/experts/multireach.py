"""MultiReach's expert: visits the four goals in a random order along curved, noisy paths."""

from __future__ import annotations

import numpy as np

from envs.experts.base import CurvedPath, Expert
from envs.multireach import GOALS


class MultiReachExpert(Expert):
    """Visits the goals in a random order along curved, noisy paths."""

    speed = 1.2  # units per second of the carrot
    noise = 0.01  # action noise std

    def reset(self) -> None:
        self.mode = tuple(int(g) for g in self.rng.permutation(4))
        self._goal: int | None = None
        self._path: CurvedPath | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        pos, visited = obs[:2], obs[2:6] > 0.5
        remaining = [g for g in self.mode if not visited[g]]
        if not remaining:
            return pos.copy()
        if remaining[0] != self._goal:
            self._goal = remaining[0]
            bend = self.rng.uniform(-0.4, 0.4)
            self._path = CurvedPath(pos, GOALS[self._goal], bend, self.speed * self.env.dt)
        target = self._path.advance() + self.rng.normal(0.0, self.noise, 2)
        return np.clip(target, -1.0, 1.0)
