"""MultiReach: visit four goal pads in any order (after VQ-BeT's Multimodal Ant).

Observation (6,): agent position (x, y) and which of the 4 goals are visited (0/1). No velocity:
once the agent moves, its velocity would give away which goal it heads for, and the task would no
longer test multimodality. Action (2,): the agent's position target in [-1, 1]^2. A goal counts as
reached when the agent's centre comes within `GOAL_RADIUS` of its centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import PlanarTaskEnv

GOALS = np.array([[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])
GOAL_RADIUS = 0.1
START_NOISE = 0.05


class MultiReachEnv(PlanarTaskEnv):
    """Point agent, four goal pads; `info` reports goals reached, which, and in what order."""

    num_modes = 24  # visiting orders of 4 goals
    progress_keys = ("goals_reached", "p1", "p2", "p3", "p4")

    def __init__(
        self, render_mode: str | None = None, width: int = 96, height: int = 96, **options: Any
    ) -> None:
        self.visited = np.zeros(len(GOALS), dtype=bool)
        self.order: list[int] = []
        super().__init__(
            "multireach.xml",
            obs_size=2 + len(GOALS),
            render_mode=render_mode,
            width=width,
            height=height,
            **options,
        )

    def _task_reset(self) -> None:
        qpos = self.init_qpos.copy()
        qpos[self.agent_qpos_index] = self.np_random.uniform(-START_NOISE, START_NOISE, 2)
        self.set_state(qpos, np.zeros_like(self.init_qvel))
        self.data.ctrl[:] = qpos[self.agent_qpos_index]
        self.visited[:] = False
        self.order = []

    def _task_step(self) -> tuple[float, bool]:
        dist = np.linalg.norm(GOALS - self.agent_pos, axis=1)
        new = np.flatnonzero((dist < GOAL_RADIUS) & ~self.visited)
        for goal in new:
            self.visited[goal] = True
            self.order.append(int(goal))
        return float(len(new)), bool(self.visited.all())

    def _task_info(self) -> dict[str, Any]:
        reached = int(self.visited.sum())
        info: dict[str, Any] = {
            "is_success": bool(self.visited.all()),
            "goals_reached": reached,
            "order": tuple(self.order),
            "visited": self.visited.copy(),
        }
        for k in range(1, len(GOALS) + 1):
            info[f"p{k}"] = reached >= k
        return info

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.agent_pos, self.visited.astype(np.float64)])
