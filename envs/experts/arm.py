"""End-effector control of the Franka arm by damped least squares, for the Kitchen expert.

The controlled point is the midpoint of the two finger pads (what touches handles and switches);
its 6-D velocity (position error plus an orientation error) maps to joint velocities through the
Jacobian of `mj_jac`. Joints that would leave their range are frozen at the margin and the rest
re-solved, so the arm never pushes into a limit (the Panda's shoulder starts 3 cm from one). In
the null space of the task the arm drifts back to its home posture, so the elbow is where it was
whatever came before (an arm that keeps its history reaches the same handle differently).
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

DAMPING = 0.01  # lambda^2 of the damped least squares
LIMIT_MARGIN = 0.05  # rad kept from each joint limit
POSTURE_GAIN = 0.0  # pull toward the home posture per step, in the task's null space
ARM_JOINTS = 7


def rot_z(angle: float) -> np.ndarray:
    """Rotation (3, 3) by `angle` about the world z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(angle: float) -> np.ndarray:
    """Rotation (3, 3) by `angle` about the world y axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class ArmController:
    """Joint-velocity actions that move the finger-pad midpoint to a pose.

    `env` is the unwrapped KitchenEnv (its `model`, `data`, `dt`, `pos_bound`). Actions follow
    FrankaKitchen-v1: joint velocity / 2 in [-1, 1]; the gripper gets +1 (open) or -1 (close).
    """

    def __init__(self, env: Any) -> None:
        self.model, self.data, self.dt = env.model, env.data, env.dt
        self.low, self.high = env.pos_bound[:ARM_JOINTS].T
        self.hand = self.model.body("panda0_link7").id
        fingers = (self.model.body("panda0_leftfinger").id, self.model.body("panda0_rightfinger").id)
        self.fingers = fingers
        self.pad_geoms = [
            g
            for g in range(self.model.ngeom)
            if self.model.geom_bodyid[g] in fingers
            and self.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE
        ]
        self.integral = np.zeros(3)
        self.home = self.data.qpos[:ARM_JOINTS].copy()

    def reset(self) -> None:
        """Call after the env's reset: forgets the integral, takes the current posture as home."""
        self.integral[:] = 0.0
        self.home = self.data.qpos[:ARM_JOINTS].copy()

    def pad(self) -> np.ndarray:
        """World position (3,) of the midpoint of the finger pads."""
        return self.data.geom_xpos[self.pad_geoms].mean(axis=0)

    def orientation(self) -> np.ndarray:
        """World rotation (3, 3) of the hand (link 7)."""
        return self.data.xmat[self.hand].reshape(3, 3).copy()

    def finger_axis(self) -> np.ndarray:
        """Unit vector (3,) from the right to the left finger (the closing axis)."""
        left, right = (self.data.xpos[b] for b in self.fingers)
        axis = left - right
        return axis / np.linalg.norm(axis)

    def action(
        self,
        target: np.ndarray,
        rotation: np.ndarray,
        grip: float,
        speed: float,
        free_roll: bool = False,
    ) -> np.ndarray:
        """Action (9,) that moves the pad midpoint toward `target` (3,) at up to `speed` m/s and the
        hand toward `rotation` (3, 3); `free_roll` leaves the rotation about the closing axis free
        (a grasped vertical handle allows it, and it buys reach)."""
        pad = self.pad()
        error = target - pad
        # The integral term removes the steady offset that gravity and contacts leave.
        self.integral = np.clip(self.integral + 0.3 * error, -0.1, 0.1)
        move = error + self.integral
        horizon = 3 * self.dt  # reach the carrot in about three steps
        norm = float(np.linalg.norm(move))
        if norm > speed * horizon:
            move *= speed * horizon / norm
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, (rotation @ self.orientation().T).flatten())
        turn = np.zeros(3)
        mujoco.mju_quat2Vel(turn, quat, 1.0)
        norm = float(np.linalg.norm(turn))
        if norm > 1.0 * horizon:
            turn *= horizon / norm
        jac_pos, jac_rot = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        mujoco.mj_jac(self.model, self.data, jac_pos, jac_rot, pad, self.hand)
        jac_rot = jac_rot[:, :ARM_JOINTS]
        if free_roll:
            axis = self.finger_axis()
            side = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
            side /= np.linalg.norm(side)
            basis = np.stack([side, np.cross(axis, side)])
            jac_rot, turn = basis @ jac_rot, basis @ turn
        jacobian = np.vstack([jac_pos[:, :ARM_JOINTS], jac_rot])
        return self._action(self._solve(jacobian, np.concatenate([move, turn])), grip)

    def joint_action(self, target: np.ndarray, grip: float, speed: float) -> np.ndarray:
        """Action (9,) that moves the arm joints toward `target` (7,) at up to `speed` rad/s."""
        delta = target - self.data.qpos[:ARM_JOINTS]
        limit = speed * 3 * self.dt
        return self._action(np.clip(delta, -limit, limit), grip)

    def _action(self, delta: np.ndarray, grip: float) -> np.ndarray:
        """FrankaKitchen-v1's action (9,) for a joint step `delta` (7,) over one env step: the env
        doubles the action into a velocity and integrates it over `dt`."""
        action = np.empty(9)
        action[:ARM_JOINTS] = np.clip(delta / (2.0 * self.dt), -1.0, 1.0)
        action[ARM_JOINTS:] = grip
        return action

    def _solve(self, jacobian: np.ndarray, task: np.ndarray) -> np.ndarray:
        """Joint step (7,) for the task step plus a posture term in its null space; joints that
        would cross a limit margin are held at it and the others re-solved."""
        q = self.data.qpos[:ARM_JOINTS]
        posture = POSTURE_GAIN * (self.home - q)
        low, high = self.low + LIMIT_MARGIN, self.high - LIMIT_MARGIN
        free = np.ones(ARM_JOINTS, dtype=bool)
        delta = np.zeros(ARM_JOINTS)
        eye = DAMPING * np.eye(len(task))
        for _ in range(ARM_JOINTS):
            part = jacobian[:, free]
            rest = task - jacobian[:, ~free] @ delta[~free]
            pinv = part.T @ np.linalg.inv(part @ part.T + eye)
            delta[free] = pinv @ rest + (np.eye(len(pinv)) - pinv @ part) @ posture[free]
            new = q + delta
            bad = free & ((new < low) | (new > high))
            if not bad.any():
                break
            delta[bad] = np.clip(new[bad], low[bad], high[bad]) - q[bad]
            free &= ~bad
        return delta
