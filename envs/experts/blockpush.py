"""BlockPush's expert: chooses a block order and assignment (4 modes), goes round each block and
pushes it home."""

from __future__ import annotations

import numpy as np

from envs.blockpush import TARGETS
from envs.experts.base import Expert


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
