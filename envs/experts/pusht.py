"""Push-T's scripted expert: a sampling planner.

Every plan samples candidate pushes (a face of the T, a point on it, a direction within 0.5 rad of
the face's inward normal, a length that shrinks as the T nears its goal), simulates each on a copy
of the live `MjData` (`mujoco.mj_copyData`) with the same controller the expert then uses, scores
the resulting pose (distance to the goal plus angle error, plus a little for the walk there), and
executes one of the best few chosen at random: that choice is what makes it multimodal. The pusher
reaches the chosen face by walking round a margin box about the T, so it does not disturb the T
before the push.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.experts.base import Expert
from envs.geometry import rotation


class PushTExpert(Expert):
    candidates = 32  # pushes simulated per plan (twice as many once the pose cost is below `fine`)
    top = 3  # one of the `top` best is executed while the pose cost exceeds `fine`
    fine = 0.1
    angle_weight = 0.2  # pose cost: metres of position error worth one radian of angle error
    coverage_weight = 0.2  # pose cost per unit of uncovered goal area fraction
    travel_weight = 0.01  # cost per metre the pusher walks to the push
    walk_step = 0.4  # largest lead of the position target over the pusher when walking
    push_step = 0.1  # ... and when pushing (the servo lags: the pusher moves ~1/6 of the lead a step)
    margin = 0.09  # clearance of the walking box around the T
    gap = 0.012  # pusher-to-face gap before a push
    reached = 0.015  # a push end or pre-contact point is reached within this distance
    corner = 0.05  # ... a corner of the walking box within this one
    waypoint_budget = 40  # steps before giving up on a waypoint (e.g. pushed against a wall)

    def reset(self) -> None:
        env = self.env
        self.mode = ()
        self._waypoints: list[tuple[np.ndarray, float, float]] = []  # (point, lead limit, tolerance)
        self._steps_on_waypoint = 0
        self._scratch = mujoco.MjData(env.model)
        self._radius = float(env.model.geom("agent").size[0])
        outline = env.outline
        self._edges = np.roll(outline, -1, axis=0) - outline
        lengths = np.linalg.norm(self._edges, axis=1)
        self._normals = np.stack([self._edges[:, 1], -self._edges[:, 0]], 1) / lengths[:, None]
        # Only the exposed part of each edge can be pushed; all edges of this outline are exposed.
        self._face_p = lengths / lengths.sum()
        lo, hi = outline.min(0) - self.margin, outline.max(0) + self.margin
        self._box = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])

    # -- cost ------------------------------------------------------------------------------
    def _pose_error(self, xy: np.ndarray, yaw: float) -> float:
        """Distance to the goal pose: metres plus `angle_weight` per radian."""
        env = self.env
        dyaw = (yaw - env.goal_yaw + np.pi) % (2 * np.pi) - np.pi
        return float(np.linalg.norm(xy - env.goal_xy) + self.angle_weight * abs(dyaw))

    def _pose_cost(self, xy: np.ndarray, yaw: float) -> float:
        """Pose error plus the uncovered fraction of the goal, which ranks the last pushes."""
        return self._pose_error(xy, yaw) + self.coverage_weight * (1.0 - self.env.coverage_at(xy, yaw))

    # -- routing in the T's frame ------------------------------------------------------------
    def _box_exit(self, point: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Where the ray point + t * direction (t >= 0) leaves the walking box."""
        lo, hi = self._box[0], self._box[2]
        t = np.inf
        for axis in range(2):
            if abs(direction[axis]) > 1e-9:
                bound = hi[axis] if direction[axis] > 0 else lo[axis]
                t = min(t, (bound - point[axis]) / direction[axis])
        return point + max(t, 0.0) * direction

    def _perimeter_s(self, point: np.ndarray) -> float:
        """Arc-length position on the box perimeter of the boundary point nearest `point`."""
        box, s, best = self._box, 0.0, (np.inf, 0.0)
        for i in range(4):
            a, b = box[i], box[(i + 1) % 4]
            seg = b - a
            length = float(np.linalg.norm(seg))
            t = float(np.clip((point - a) @ seg / length**2, 0.0, 1.0))
            d = float(np.linalg.norm(a + t * seg - point))
            if d < best[0]:
                best = (d, s + t * length)
            s += length
        return best[1]

    def _walk(self, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
        """Box corners between two boundary points, the shorter way round."""
        box = self._box
        sides = np.linalg.norm(np.roll(box, -1, axis=0) - box, axis=1)
        corner_s = np.concatenate([[0.0], np.cumsum(sides)[:-1]])
        total = float(sides.sum())
        s0, s1 = self._perimeter_s(start), self._perimeter_s(end)
        forward = (s1 - s0) % total
        if forward <= total / 2:
            between = sorted(
                ((c - s0) % total, i) for i, c in enumerate(corner_s) if 0 < (c - s0) % total < forward
            )
        else:
            back = total - forward
            between = sorted(
                ((s0 - c) % total, i) for i, c in enumerate(corner_s) if 0 < (s0 - c) % total < back
            )
        return [box[i] for _, i in between]

    def _clear(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the segment a -> b (T frame) keeps the pusher off the T (slab test against each
        rectangle grown by the pusher's radius)."""
        grow = self._radius + 0.5 * self.gap
        d = b - a
        for part in self.env.parts:
            lo, hi = part[0] - grow, part[2] + grow
            t0, t1 = 0.0, 1.0
            for axis in range(2):
                if abs(d[axis]) < 1e-12:
                    if not lo[axis] <= a[axis] <= hi[axis]:
                        t0, t1 = 1.0, 0.0
                    continue
                ta, tb = sorted(((lo[axis] - a[axis]) / d[axis], (hi[axis] - a[axis]) / d[axis]))
                t0, t1 = max(t0, ta), min(t1, tb)
            if t0 <= t1:
                return False
        return True

    def _route(self, pusher: np.ndarray, precontact: np.ndarray, normal: np.ndarray) -> list[np.ndarray]:
        """Waypoints (T frame) from the pusher to the pre-contact point of a face."""
        if self._clear(pusher, precontact):
            return [precontact]
        lo, hi = self._box[0], self._box[2]
        inside = bool(np.all(pusher > lo) and np.all(pusher < hi))
        start = pusher
        path: list[np.ndarray] = []
        if inside:  # back out along the nearest face's normal first
            d = pusher - self.env.outline
            t = np.clip((d * self._edges).sum(1) / (self._edges**2).sum(1), 0.0, 1.0)
            face = int(np.argmin(np.linalg.norm(d - t[:, None] * self._edges, axis=1)))
            start = self._box_exit(pusher, self._normals[face])
            path.append(start)
        staging = self._box_exit(precontact, normal)
        return [*path, *self._walk(start, staging), staging, precontact]

    # -- planning --------------------------------------------------------------------------
    def _simulate(self, precontact: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, float]:
        """T pose after pushing from `precontact` to `end` (world) on a copy of the live state."""
        env, scratch = self.env, self._scratch
        mujoco.mj_copyData(scratch, env.model, env.data)
        scratch.qpos[env.agent_qpos_index] = precontact
        scratch.qvel[env.agent_dof_index] = 0.0
        for _ in range(self.waypoint_budget // 2):
            pos = scratch.qpos[env.agent_qpos_index]
            if np.linalg.norm(end - pos) < self.reached:
                break
            scratch.ctrl[:] = pos + _clip_norm(end - pos, self.push_step)
            mujoco.mj_step(env.model, scratch, nstep=env.frame_skip)
        scratch.ctrl[:] = scratch.qpos[env.agent_qpos_index]
        mujoco.mj_step(env.model, scratch, nstep=2 * env.frame_skip)  # let the T come to rest
        adr = env.tee_qpos_index
        return scratch.qpos[adr[:2]].copy(), float(scratch.qpos[adr[2]])

    def _plan(self, pusher: np.ndarray) -> None:
        env, rng = self.env, self.rng
        xy, yaw = env.tee_pose()
        rot = rotation(yaw)
        local_pusher = rot.T @ (pusher - xy)
        error = self._pose_error(xy, yaw)
        max_length = min(0.3, 0.03 + 1.5 * error)
        scored = []
        for _ in range(self.candidates if error > self.fine else 2 * self.candidates):
            face = int(rng.choice(len(self._face_p), p=self._face_p))
            u = rng.uniform(0.1, 0.9)
            normal = self._normals[face]
            point = self.env.outline[face] + u * self._edges[face]
            precontact = point + normal * (self._radius + self.gap)
            direction = rotation(rng.uniform(-0.5, 0.5)) @ -normal
            end = precontact + direction * (self.gap + rng.uniform(0.01, max_length))
            world_pre, world_end = xy + rot @ precontact, xy + rot @ end
            if np.abs(world_pre).max() > 0.92 or np.abs(world_end).max() > 0.95:
                continue  # against a wall: the pusher cannot get there
            route = self._route(local_pusher, precontact, normal)
            travel = sum(
                np.linalg.norm(b - a) for a, b in zip([local_pusher, *route[:-1]], route, strict=True)
            )
            new_xy, new_yaw = self._simulate(world_pre, world_end)
            cost = self._pose_cost(new_xy, new_yaw) + self.travel_weight * travel
            scored.append((cost, face, [xy + rot @ p for p in route], world_end))
        if not scored:  # boxed in against a wall: nudge towards the goal and plan again
            nudge = np.clip(pusher + 0.1 * (env.goal_xy - pusher), -0.9, 0.9)
            self._waypoints = [(nudge, self.walk_step, self.reached)]
            return
        scored.sort(key=lambda c: c[0])
        top = self.top if error > self.fine else 1  # the last centimetres need the best push
        _, face, route, end = scored[int(rng.integers(min(top, len(scored))))]
        if not self.mode:
            self.mode = (face,)
        corners = [(np.clip(p, -0.93, 0.93), self.walk_step, self.corner) for p in route[:-1]]
        self._waypoints = [
            *corners,
            (route[-1], self.walk_step, self.reached),
            (end, self.push_step, self.reached),
        ]

    # -- acting ----------------------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        pusher = obs[:2]
        if self._waypoints and (
            np.linalg.norm(self._waypoints[0][0] - pusher) < self._waypoints[0][2]
            or self._steps_on_waypoint >= self.waypoint_budget
        ):
            self._waypoints.pop(0)
            self._steps_on_waypoint = 0
        if not self._waypoints:
            if self.env.tee_speed() > 0.02:  # plan from a T at rest: wait until it stops sliding
                return pusher.copy()
            self._plan(pusher)
            self._steps_on_waypoint = 0
        self._steps_on_waypoint += 1
        point, lead, _ = self._waypoints[0]
        target = pusher + _clip_norm(point - pusher, lead)
        return np.clip(target + self.rng.normal(0.0, 0.002, 2), -1.0, 1.0)


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v * (limit / norm) if norm > limit else v
