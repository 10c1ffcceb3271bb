"""Kitchen: the Franka Kitchen world (Gupta et al. 2019; D4RL's kitchen) as our own MujocoEnv, on
the MJCF assets that ship inside the `gymnasium-robotics` wheel (`pip install "vqbet[kitchen]"`).

Why our own class: gymnasium-robotics 1.4.2's FrankaKitchen-v1 fails on mujoco >= 3.12 (an
assertion on the joint-type enum in `mujoco_utils.get_joint_qpos`), and we keep mujoco current.
This file reads only the package's XML files; it imports none of its code.

Action (9,) in [-1, 1], as FrankaKitchen-v1 defines it: joint velocities of the 7 arm joints and
the 2 fingers, scaled by 2, clipped to each joint's velocity bound, integrated over one step into a
position target and clipped to the joint's range. One deviation: the target integrates from the
true joint positions, not from the noisy observed ones (FrankaKitchen-v1 inherits that from D4RL and
calls it an MDP violation). Observation (59,): robot joint positions (9) and velocities (9), object
joint positions (21) and velocities (20), with FrankaKitchen-v1's uniform observation noise; no
"which task is next" flag. Each episode asks for the same four sub-tasks (`TASKS`), in any order
(24 modes); a sub-task is done when its object joints are within `BONUS_THRESH` (L2) of their goal,
FrankaKitchen-v1's rule. `info`: `is_success` (all four done), `tasks_completed`, `p1..p4`, the
completion `order` (indices into `TASKS`), `unstable`.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from envs.base import StabilityChecks, StrictReset

OBS_ELEMENT_INDICES = {  # qpos indices of each sub-task's object joints (FrankaKitchen-v1)
    "bottom burner": np.array([11, 12]),
    "top burner": np.array([15, 16]),
    "light switch": np.array([17, 18]),
    "slide cabinet": np.array([19]),
    "hinge cabinet": np.array([20, 21]),
    "microwave": np.array([22]),
    "kettle": np.array([23, 24, 25, 26, 27, 28, 29]),
}
OBS_ELEMENT_GOALS = {
    "bottom burner": np.array([-0.88, -0.01]),
    "top burner": np.array([-0.92, -0.01]),
    "light switch": np.array([-0.69, -0.05]),
    "slide cabinet": np.array([0.37]),
    "hinge cabinet": np.array([0.0, 1.45]),
    "microwave": np.array([-0.75]),
    "kettle": np.array([-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06]),
}
BONUS_THRESH = 0.3
ACTION_SCALE = 2.0
"""Joint velocity (rad/s, m/s) per unit of action, before the per-joint velocity bounds."""
TASKS = ("microwave", "slide cabinet", "light switch", "hinge cabinet")
"""The four sub-tasks of every episode: pushes and pulls a scripted arm can do without a grasp."""
INIT_QPOS = np.array(  # FrankaKitchen-v1's start: the arm above the counter, everything closed
    [
        *(0.148388, -1.768486, 1.843903, -2.476858, 0.260252, 0.712533, 1.595154, 0.047927, 0.037135),
        *(-2.66e-04, -5.18e-05, 3.13e-05, -4.51e-05, -3.91e-06, -4.23e-05, 6.28e-05, 4.05e-05, 4.63e-04),
        *(-2.27e-04, -4.66e-04, -6.44e-03, -1.77e-03, 1.08e-03, -0.269397, 0.350383, 1.619447, 1.006188),
        *(4.06e-03, -6.62e-03, -2.68e-04),
    ]
)
CAMERA = {"distance": 2.2, "azimuth": 70.0, "elevation": -35.0, "lookat": np.array([-0.2, 0.5, 2.0])}


def assets() -> Path:
    """The folder of gymnasium-robotics' kitchen MJCF (found without importing the package)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            'vqbet/Kitchen-v0 uses the MJCF assets of gymnasium-robotics: pip install "vqbet[kitchen]"'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "envs" / "assets" / "kitchen_franka"


def joint_specs(config: Path, count: int) -> dict[str, np.ndarray]:
    """Position and velocity bounds (count, 2) and noise amplitudes (count,) per qpos/qvel index,
    from the robot config file of the assets."""
    root = ET.parse(config).getroot()
    out: dict[str, list] = {"pos_bound": [], "vel_bound": [], "pos_noise_amp": [], "vel_noise_amp": []}
    for i in range(count):
        node = root.find(f"qpos{i}")
        for key in out:
            values = [float(v) for v in node.get(key).split()]
            out[key].append(values if key.endswith("bound") else values[0])
    return {k: np.array(v) for k, v in out.items()}


class KitchenEnv(StrictReset, StabilityChecks, MujocoEnv):
    """Franka Kitchen with four sub-tasks in any order; see the module doc."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 12}  # noqa: RUF012
    num_modes = 24  # completion orders of the four sub-tasks
    progress_keys = ("tasks_completed", "p1", "p2", "p3", "p4")

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = 96,
        height: int = 96,
        robot_noise_ratio: float = 0.01,
        object_noise_ratio: float = 0.0005,
        frame_skip: int = 40,
    ) -> None:
        self.robot_noise_ratio, self.object_noise_ratio = robot_noise_ratio, object_noise_ratio
        self.completed: list[int] = []
        folder = assets()
        observation_space = Box(-np.inf, np.inf, shape=(59,), dtype=np.float64)
        MujocoEnv.__init__(
            self,
            str(folder / "kitchen_assets" / "kitchen_env_model.xml"),
            frame_skip,
            observation_space=observation_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config=CAMERA,
        )
        self.metadata = dict(self.metadata, render_fps=round(1.0 / self.dt))
        # Headless CPU rendering (EGL, no GPU) of the scene's four shadow-casting lights,
        # reflections and 8x multisampling costs an order of magnitude more per frame.
        self.model.light_castshadow[:] = 0
        self.model.mat_reflectance[:] = 0.0
        self.model.vis.quality.offsamples = 0
        self.action_space = Box(-1.0, 1.0, shape=(9,), dtype=np.float32)
        specs = joint_specs(folder / "franka_assets" / "franka_config.xml", self.model.nv)
        self.pos_bound, self.vel_bound = specs["pos_bound"][:9], specs["vel_bound"][:9]
        self.pos_noise, self.vel_noise = specs["pos_noise_amp"], specs["vel_noise_amp"]
        self.init_qpos = INIT_QPOS.copy()
        self.init_qvel = np.zeros(self.model.nv)
        self.end_effector = self.model.site("end_effector").id
        """Site id of the gripper's end effector (for experts: `data.site_xpos`, `mj_jacSite`)."""

    # -- task ------------------------------------------------------------------------------
    def task_distance(self, task: str) -> float:
        """L2 distance of a sub-task's object joints to their goal."""
        error = self.data.qpos[OBS_ELEMENT_INDICES[task]] - OBS_ELEMENT_GOALS[task]
        return float(np.linalg.norm(error))

    def _update_completions(self) -> None:
        for index, task in enumerate(TASKS):
            if index not in self.completed and self.task_distance(task) < BONUS_THRESH:
                self.completed.append(index)

    def _info(self, unstable: bool = False) -> dict[str, Any]:
        done = len(self.completed)
        info: dict[str, Any] = {
            "is_success": done == len(TASKS) and not unstable,
            "tasks_completed": done,
            "order": tuple(self.completed),
            "unstable": unstable,
        }
        for k in range(1, len(TASKS) + 1):
            info[f"p{k}"] = done >= k
        return info

    # -- gymnasium API ---------------------------------------------------------------------
    def noise_amplitudes(self) -> tuple[np.ndarray, np.ndarray]:
        """Uniform observation-noise amplitudes: (qpos (30,), qvel (29,)); the noise of a
        coordinate is amplitude x U(-1, 1)."""
        robot, objects = self.robot_noise_ratio, self.object_noise_ratio
        # FrankaKitchen-v1's amplitudes, its off-by-one for the object positions included (the 30
        # qpos of the free-joint kettle read the 29 per-dof amplitudes from index 8).
        pos_amp = np.concatenate([robot * self.pos_noise[:9], objects * self.pos_noise[8:]])
        vel_amp = np.concatenate([robot * self.vel_noise[:9], objects * self.vel_noise[9:]])
        return pos_amp, vel_amp

    def _get_obs(self) -> np.ndarray:
        qpos, qvel = self.data.qpos.copy(), self.data.qvel.copy()
        pos_amp, vel_amp = self.noise_amplitudes()
        qpos += pos_amp * self.np_random.uniform(-1.0, 1.0, qpos.shape)
        qvel += vel_amp * self.np_random.uniform(-1.0, 1.0, qvel.shape)
        return np.concatenate([qpos[:9], qvel[:9], qpos[9:], qvel[9:]])

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        finite = bool(np.isfinite(action).all() and self._finite_state())
        warnings_before = self._warnings()
        if finite:  # a NaN never reaches MuJoCo
            velocity = np.clip(ACTION_SCALE * np.clip(action, -1.0, 1.0), *self.vel_bound.T)
            target = np.clip(self.data.qpos[:9] + velocity * self.dt, *self.pos_bound.T)
            self.do_simulation(target, self.frame_skip)
        if not finite or self._unstable(warnings_before):
            mujoco.mj_resetData(self.model, self.data)
            return self._get_obs(), 0.0, True, False, self._info(unstable=True)
        before = len(self.completed)
        self._update_completions()
        if self.render_mode == "human":
            self.render()
        info = self._info()
        return self._get_obs(), float(len(self.completed) - before), bool(info["is_success"]), False, info

    def reset_model(self) -> np.ndarray:
        self.set_state(self.init_qpos, self.init_qvel)
        self.completed = []
        return self._get_obs()

    def _get_reset_info(self) -> dict[str, Any]:
        return self._info()
