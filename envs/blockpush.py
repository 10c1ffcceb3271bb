"""BlockPush: push two blocks into two target zones, one block per zone (after IBC/BeT BlockPush).

Observation (10,): pusher (x, y), block 0 (x, y), block 1 (x, y), and each block's yaw as
(sin, cos). Action (2,): the pusher's position target in [-1, 1]^2. Success when each target zone
holds a different block: any assignment and order (4 modes). `info` reports p1/p2 (one / both
targets filled) and the order of first placements as (block, target) pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import PlanarTaskEnv

TARGETS = np.array([[-0.4, 0.45], [0.4, 0.45]])
TARGET_RADIUS = 0.06
BLOCK_STARTS = np.array([[-0.3, -0.3], [0.3, -0.3]])
BLOCK_NOISE = 0.06
AGENT_START = np.array([0.0, -0.7])


class BlockPushEnv(PlanarTaskEnv):
    """Planar pusher, two blocks, two target zones."""

    num_modes = 4  # which block first x which target it goes to
    progress_keys = ("targets_filled", "p1", "p2")

    def __init__(
        self, render_mode: str | None = None, width: int = 96, height: int = 96, **options: Any
    ) -> None:
        self.order: list[tuple[int, int]] = []
        super().__init__(
            "blockpush.xml", obs_size=10, render_mode=render_mode, width=width, height=height, **options
        )
        self._block_adr = [
            [self.model.jnt_qposadr[self.model.joint(f"block{b}_{a}").id] for a in ("x", "y", "yaw")]
            for b in range(2)
        ]

    def block_xy(self, block: int) -> np.ndarray:
        """(2,) centre of a block."""
        return self.body_xy(f"block{block}")

    def _task_reset(self) -> None:
        qpos = self.init_qpos.copy()
        qpos[self.agent_qpos_index] = AGENT_START + self.np_random.uniform(-0.05, 0.05, 2)
        for _block, (ax, ay, ayaw) in enumerate(self._block_adr):
            # Joint positions are offsets from the body's position in the XML.
            qpos[[ax, ay]] = self.np_random.uniform(-BLOCK_NOISE, BLOCK_NOISE, 2)
            qpos[ayaw] = self.np_random.uniform(-np.pi / 4, np.pi / 4)
        self.set_state(qpos, np.zeros_like(self.init_qvel))
        self.data.ctrl[:] = qpos[self.agent_qpos_index]
        self.order = []

    def _holder(self, target: int) -> int | None:
        for block in range(2):
            if np.linalg.norm(self.block_xy(block) - TARGETS[target]) < TARGET_RADIUS:
                return block
        return None

    def _task_step(self) -> tuple[float, bool]:
        reward = 0.0
        for target in range(2):
            holder = self._holder(target)
            if holder is not None and (holder, target) not in self.order:
                self.order.append((holder, target))
                reward += 1.0
        return reward, self._success()

    def _success(self) -> bool:
        holders = [self._holder(t) for t in range(2)]
        return None not in holders and holders[0] != holders[1]

    def _task_info(self) -> dict[str, Any]:
        holders = [self._holder(t) for t in range(2)]
        filled = len({h for h in holders if h is not None})
        return {
            "is_success": self._success(),
            "targets_filled": filled,
            "p1": filled >= 1,
            "p2": filled >= 2,
            "order": tuple(self.order),
        }

    def _get_obs(self) -> np.ndarray:
        yaws = [self.data.qpos[adr[2]] for adr in self._block_adr]
        return np.concatenate(
            [
                self.agent_pos,
                self.block_xy(0),
                self.block_xy(1),
                [np.sin(yaws[0]), np.cos(yaws[0]), np.sin(yaws[1]), np.cos(yaws[1])],
            ]
        )
