"""PushT: push a T-shaped block onto a fixed goal pose with a point pusher (after Diffusion
Policy's Push-T, in MuJoCo).

Observation (6,): pusher (x, y), the T's centroid (x, y) and its yaw as (sin, cos). Action (2,):
the pusher's position target in [-1, 1]^2. Coverage is the area the T shares with the goal T,
over the T's area, computed exactly from the two rectangles of each T; the episode succeeds (and
ends) when coverage reaches `SUCCESS_COVERAGE`. `info` reports coverage, max_coverage and, as the
behaviour mode, the face of the T the pusher touched first (one of `FACES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import PlanarTaskEnv
from envs.geometry import area, overlap, rectangle, transform

SUCCESS_COVERAGE = 0.95
START_RANGE = 0.45  # T centroid drawn in [-START_RANGE, START_RANGE]^2, yaw in [-pi, pi)
START_MAX_COVERAGE = 0.2
AGENT_CLEARANCE = 0.45  # pusher starts at least this far from the T's centroid
FACES = (
    "stem bottom",
    "stem right",
    "bar underside right",
    "bar right end",
    "bar top",
    "bar left end",
    "bar underside left",
    "stem left",
)


def yaw_of(quat: np.ndarray) -> float:
    """Yaw of a (w, x, y, z) quaternion that turns about z only."""
    return float(2.0 * np.arctan2(quat[3], quat[0]))


class PushTEnv(PlanarTaskEnv):
    """Point pusher, T block, fixed goal pose; coverage-based success."""

    num_modes = len(FACES)  # the first face pushed
    progress_keys = ("coverage", "max_coverage")

    def __init__(
        self, render_mode: str | None = None, width: int = 96, height: int = 96, **options: Any
    ) -> None:
        self.first_face: int | None = None
        self.coverage = self.max_coverage = 0.0
        super().__init__(
            "pusht.xml", obs_size=6, render_mode=render_mode, width=width, height=height, **options
        )
        m = self.model
        self.tee_qpos_index = np.array([m.jnt_qposadr[m.joint(f"tee_{a}").id] for a in ("x", "y", "yaw")])
        """(3,) where the T's x, y, yaw sit in `data.qpos`."""
        self.tee_dof_index = np.array([m.jnt_dofadr[m.joint(f"tee_{a}").id] for a in ("x", "y", "yaw")])
        """(3,) where the T's velocities sit in `data.qvel`."""
        self._agent_geom = m.geom("agent").id
        self._tee_geoms = {m.geom("tee_bar").id, m.geom("tee_stem").id}
        self.parts = [self._part("tee_bar"), self._part("tee_stem")]  # body frame, (4, 2) each
        goal = m.body("goal")
        self.goal_xy, self.goal_yaw = goal.pos[:2].copy(), yaw_of(goal.quat)
        goal_parts = [self._part("goal_bar"), self._part("goal_stem")]
        for a, b in zip(self.parts, goal_parts, strict=True):
            if not np.allclose(a, b):
                raise ValueError("pusht.xml: the goal T's rectangles must equal the T's")
        self.goal_parts = [transform(p, self.goal_xy, self.goal_yaw) for p in goal_parts]
        self.area = sum(area(p) for p in self.parts)
        bar, stem = self.parts
        if not np.isclose(stem[2, 1], bar[0, 1]):
            raise ValueError("pusht.xml: the stem's top must meet the bar's underside")
        # Counter-clockwise outline; edge i runs from outline[i] to outline[i + 1] and is FACES[i].
        self.outline = np.array([stem[0], stem[1], stem[2], bar[1], bar[2], bar[3], bar[0], stem[3]])
        self.radius = float(np.linalg.norm(self.outline, axis=1).max())  # of the T about its centroid

    def _part(self, geom: str) -> np.ndarray:
        g = self.model.geom(geom)
        return rectangle(g.pos[:2], g.size[:2])

    # -- state -----------------------------------------------------------------------------
    def tee_pose(self) -> tuple[np.ndarray, float]:
        """(centroid (2,), yaw) of the T."""
        q = self.data.qpos
        return q[self.tee_qpos_index[:2]].copy(), float(q[self.tee_qpos_index[2]])

    def tee_speed(self) -> float:
        """Largest |velocity| of the T's x, y, yaw joints."""
        return float(np.abs(self.data.qvel[self.tee_dof_index]).max())

    def coverage_at(self, xy: np.ndarray, yaw: float) -> float:
        """Fraction of the goal T covered by a T at pose (xy, yaw)."""
        if np.linalg.norm(xy - self.goal_xy) >= 2 * self.radius:
            return 0.0
        parts = [transform(p, xy, yaw) for p in self.parts]
        return overlap(parts, self.goal_parts) / self.area

    def face_at(self, point: np.ndarray) -> int:
        """Index into FACES of the T's outline edge nearest a world point."""
        xy, yaw = self.tee_pose()
        c, s = np.cos(yaw), np.sin(yaw)
        d = point - xy
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
        a, b = self.outline, np.roll(self.outline, -1, axis=0)
        seg = b - a
        t = np.clip(((local - a) * seg).sum(1) / (seg * seg).sum(1), 0.0, 1.0)
        return int(np.argmin(np.linalg.norm(a + t[:, None] * seg - local, axis=1)))

    # -- task ------------------------------------------------------------------------------
    def _task_reset(self) -> None:
        qpos = self.init_qpos.copy()
        rng = self.np_random
        while True:
            xy = rng.uniform(-START_RANGE, START_RANGE, 2)
            yaw = rng.uniform(-np.pi, np.pi)
            if self.coverage_at(xy, yaw) <= START_MAX_COVERAGE:
                break
        while True:
            agent = rng.uniform(-0.85, 0.85, 2)
            if np.linalg.norm(agent - xy) >= AGENT_CLEARANCE:
                break
        qpos[self.tee_qpos_index] = [xy[0], xy[1], yaw]
        qpos[self.agent_qpos_index] = agent
        self.set_state(qpos, np.zeros_like(self.init_qvel))
        self.data.ctrl[:] = agent
        self.first_face = None
        self.coverage = self.max_coverage = self.coverage_at(xy, yaw)

    def _first_contact(self) -> int | None:
        for contact in self.data.contact[: self.data.ncon]:
            pair = {int(contact.geom1), int(contact.geom2)}
            if self._agent_geom in pair and pair & self._tee_geoms:
                return self.face_at(contact.pos[:2])
        return None

    def _task_step(self) -> tuple[float, bool]:
        self.coverage = self.coverage_at(*self.tee_pose())
        self.max_coverage = max(self.max_coverage, self.coverage)
        if self.first_face is None and self.data.ncon:
            self.first_face = self._first_contact()
        return self.coverage, self.coverage >= SUCCESS_COVERAGE

    def _task_info(self) -> dict[str, Any]:
        return {
            "is_success": self.max_coverage >= SUCCESS_COVERAGE,
            "coverage": self.coverage,
            "max_coverage": self.max_coverage,
            "order": () if self.first_face is None else (self.first_face,),
        }

    def _get_obs(self) -> np.ndarray:
        xy, yaw = self.tee_pose()
        return np.concatenate([self.agent_pos, xy, [np.sin(yaw), np.cos(yaw)]])
