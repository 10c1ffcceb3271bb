"""The base of the scripted experts, and the curved path that gives their motions variety."""

from __future__ import annotations

from typing import Any

import numpy as np


class Expert:
    """Base: `reset()` chooses a mode, `act(obs)` returns an action; `mode` names the choice."""

    def __init__(self, env: Any, seed: int) -> None:
        self.env = env.unwrapped
        self.rng = np.random.default_rng(seed)
        self.mode: tuple[int, ...] = ()

    def reset(self) -> None:
        raise NotImplementedError

    def act(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class CurvedPath:
    """A quadratic Bezier from `start` to `end`, bent sideways by `bend` x its length, followed by a
    carrot that advances `step` units of arc per call."""

    def __init__(self, start: np.ndarray, end: np.ndarray, bend: float, step: float) -> None:
        delta = end - start
        length = float(np.linalg.norm(delta)) + 1e-9
        normal = np.array([-delta[1], delta[0]]) / length
        self.points = (start, (start + end) / 2 + normal * bend * length, end)
        self.ds = step / length
        self.s = 0.0

    def advance(self) -> np.ndarray:
        self.s = min(1.0, self.s + self.ds)
        p0, p1, p2 = self.points
        s = self.s
        return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2
