"""Scripted stochastic experts. Each picks a mode (a sub-goal order) at reset and acts from the
observation plus the env's privileged state; randomness only from its own seeded generator.

    expert = make_expert(env, seed=3); expert.reset(); action = expert.act(obs)
"""

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


class MultiReachExpert(Expert):
    """Visits the goals in a random order along curved, noisy paths."""

    speed = 1.2  # units per second of the carrot
    noise = 0.01  # action noise std

    def reset(self) -> None:
        self.mode = tuple(int(g) for g in self.rng.permutation(4))
        self._goal: int | None = None
        self._path: CurvedPath | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        from envs.multireach import GOALS

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


class BlockPushExpert(Expert):
    """Chooses which block goes first and to which target (4 modes); for each block it goes round
    to the side opposite the target and pushes it home. Hysteresis between approaching and pushing
    (enter the push within 0.03 of the approach point, leave it only when more than 0.05 off the
    line) keeps it from dithering."""

    behind = 0.11  # approach point distance behind the block centre
    max_step = 0.09  # largest jump of the position target per step
    noise = 0.005

    def reset(self) -> None:
        first, target = int(self.rng.integers(2)), int(self.rng.integers(2))
        self.plan = [(first, target), (1 - first, 1 - target)]
        self.mode = (first, target)
        self._pushing = False
        self._side = 0.0

    def _route(self, pos: np.ndarray, goal: np.ndarray, obstacles: list[np.ndarray]) -> np.ndarray:
        """Next waypoint from pos to goal that keeps clear of the blocks."""
        for centre in obstacles:
            seg = goal - pos
            length2 = float(seg @ seg) + 1e-9
            s = float(np.clip((centre - pos) @ seg / length2, 0.0, 1.0))
            closest = pos + s * seg
            if np.linalg.norm(centre - closest) < 0.1 and 0.0 < s < 1.0:
                normal = np.array([-seg[1], seg[0]]) / np.sqrt(length2)
                if self._side == 0.0:
                    self._side = 1.0 if (pos - centre) @ normal >= 0 else -1.0
                return centre + normal * self._side * 0.16
        self._side = 0.0
        return goal

    def act(self, obs: np.ndarray) -> np.ndarray:
        from envs.blockpush import TARGETS

        pos = obs[:2]
        blocks = [obs[2:4], obs[4:6]]
        todo = [(b, t) for b, t in self.plan if np.linalg.norm(blocks[b] - TARGETS[t]) > 0.035]
        if not todo:
            return pos.copy()
        block, target = todo[0]
        centre = blocks[block]
        to_goal = TARGETS[target] - centre
        direction = to_goal / (np.linalg.norm(to_goal) + 1e-9)
        approach = centre - direction * self.behind
        rel = pos - centre
        lateral = abs(rel[0] * direction[1] - rel[1] * direction[0])
        along = rel @ direction
        if self._pushing and (lateral > 0.05 or along > -0.06):
            self._pushing = False
        elif not self._pushing and np.linalg.norm(pos - approach) < 0.03:
            self._pushing = True
        if self._pushing:
            # Aim through the block's centre a little beyond it, slowing near the target.
            reach = min(0.08, float(np.linalg.norm(to_goal)) + 0.02)
            goal = centre + direction * reach
        else:
            goal = self._route(pos, approach, [blocks[0], blocks[1]])
        step = goal - pos
        norm = float(np.linalg.norm(step))
        if norm > self.max_step:
            step *= self.max_step / norm
        return np.clip(pos + step + self.rng.normal(0.0, self.noise, 2), -1.0, 1.0)


EXPERTS = {"MultiReach": MultiReachExpert, "BlockPush": BlockPushExpert}


def make_expert(env: Any, seed: int) -> Expert:
    """The scripted expert of `env`'s task, seeded."""
    name = type(env.unwrapped).__name__.removesuffix("Env")
    if name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {name!r}; known: {sorted(EXPERTS)}")
    return EXPERTS[name](env, seed)


# PushT's planner lives in its own module and builds on Expert, so it registers after Expert exists.
from envs.pusht_expert import PushTExpert  # noqa: E402

EXPERTS["PushT"] = PushTExpert
