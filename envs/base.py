"""Shared base of the planar MuJoCo tasks: asset loading, rendering settings, instability checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from envs.cameras import CameraRig, check_obs_mode

ASSETS = Path(__file__).resolve().parent / "assets"

_INSTABILITY_WARNINGS = (
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
)

TOP_CAMERA = {"distance": 3.0, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)}


class StabilityChecks:
    """For MujocoEnv subclasses: whether the state is finite and whether MuJoCo flagged a bad
    step (it resets the state itself on a bad acceleration and only counts a warning)."""

    data: Any

    def _warnings(self) -> int:
        return sum(int(self.data.warning[w].number) for w in _INSTABILITY_WARNINGS)

    def _finite_state(self) -> bool:
        return bool(np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all())

    def _unstable(self, warnings_before: int) -> bool:
        return not self._finite_state() or self._warnings() > warnings_before


class StrictReset:
    """`reset(options=...)` with a key the env does not read is an error: MujocoEnv would drop it
    without a word, and the caller would believe it applied. `reset_options` names those it reads
    (none, in every task here)."""

    reset_options: tuple[str, ...] = ()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        unknown = sorted(set(options or {}) - set(self.reset_options))
        if unknown:
            takes = list(self.reset_options) or "none"
            raise ValueError(f"{type(self).__name__}.reset: unknown option(s) {unknown}; it takes {takes}")
        return super().reset(seed=seed, options=options)


class PlanarTaskEnv(StrictReset, StabilityChecks, MujocoEnv):
    """A MujocoEnv seen from above, with a position-controlled point agent on slide joints.

    Subclasses give the XML file, the observation size and the task logic (`_task_reset`,
    `_task_step`, `_get_obs`). `obs_mode` "pixels" / "pixels+agent" observes `cameras` instead
    (envs.cameras). A step whose action or state is not finite ends the episode as a
    failure with `info["unstable"] = True` (a NaN action never reaches MuJoCo), so an evaluation
    can go on.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}  # noqa: RUF012
    progress_keys: tuple[str, ...] = ()
    """The `info` keys that measure task progress; evaluation keeps them per episode."""
    num_modes: int = 1
    """How many behaviour modes (completion orders) the task has."""

    def __init__(
        self,
        xml_file: str,
        obs_size: int,
        frame_skip: int = 5,
        render_mode: str | None = None,
        width: int = 96,
        height: int = 96,
        obs_mode: str = "state",
        cameras: Sequence[str] = ("top",),
        **kwargs: Any,
    ) -> None:
        self.obs_mode = obs_mode
        self.camera_names = check_obs_mode(obs_mode, cameras)
        self.rig: CameraRig | None = None
        # Every feature of these tasks (positions in the walled arena, flags, sin/cos) is within 1.5.
        self.state_space = Box(low=-1.5, high=1.5, shape=(obs_size,), dtype=np.float64)
        observation_space = self.state_space
        MujocoEnv.__init__(
            self,
            str(ASSETS / xml_file),
            frame_skip,
            observation_space=observation_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config=TOP_CAMERA,
            **kwargs,
        )
        self.metadata = dict(self.metadata, render_fps=round(1.0 / self.dt))
        joints = [self.model.joint(f"agent_{a}") for a in ("x", "y")]
        self.agent_qpos_index = np.array([self.model.jnt_qposadr[j.id] for j in joints])
        """(2,) where the agent's x, y sit in `data.qpos` (for experts that simulate ahead)."""
        self.agent_dof_index = np.array([self.model.jnt_dofadr[j.id] for j in joints])
        """(2,) where the agent's x, y velocities sit in `data.qvel`."""
        if obs_mode != "state":
            self.rig = CameraRig(self.model, self.camera_names, width, height)
            agent = Box(low=-1.5, high=1.5, shape=(2,), dtype=np.float64)
            self.observation_space = self.rig.space(agent if obs_mode == "pixels+agent" else None)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def agent_pos(self) -> np.ndarray:
        """(2,) agent position in the plane."""
        return self.data.qpos[self.agent_qpos_index].copy()

    def body_xy(self, name: str) -> np.ndarray:
        """(2,) position of a body in the plane."""
        return self.data.body(name).xpos[:2].copy()

    def state_vector(self) -> np.ndarray:
        """The task's full state observation (what obs_mode="state" returns; experts act on it)."""
        return self._get_obs()

    def _observation(self) -> Any:
        """The observation of the env's obs_mode: the state vector, or a dict of camera frames
        (+ "state": the agent's position for "pixels+agent")."""
        if self.rig is None:
            return self._get_obs()
        mujoco.mj_forward(self.model, self.data)  # the frames show the state as it is now
        obs: dict[str, Any] = {"state": self.agent_pos} if self.obs_mode == "pixels+agent" else {}
        obs.update(self.rig.render(self.data))
        return obs

    def close(self) -> None:
        if self.rig is not None:
            self.rig.close()
            self.rig = None
        super().close()

    def _end_unstable(self) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """End the episode as a failure: `info["unstable"] = True`, a finite (reset) state."""
        mujoco.mj_resetData(self.model, self.data)
        info = self._task_info()
        info.update(is_success=False, unstable=True)
        return self._observation(), 0.0, True, False, info

    # -- gymnasium API ---------------------------------------------------------------------
    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        if not (np.isfinite(action).all() and self._finite_state()):
            # Never hand MuJoCo a NaN: it would print its own warning and reset the state itself.
            return self._end_unstable()
        warnings_before = self._warnings()
        self.do_simulation(np.clip(action, -1.0, 1.0), self.frame_skip)
        if self._unstable(warnings_before):
            return self._end_unstable()
        reward, terminated = self._task_step()
        if self.render_mode == "human":
            self.render()
        info = self._task_info()
        info["unstable"] = False
        return self._observation(), float(reward), bool(terminated), False, info

    def reset_model(self) -> Any:
        self._task_reset()
        return self._observation()

    def _get_reset_info(self) -> dict[str, Any]:
        info = self._task_info()
        info["unstable"] = False
        return info

    # -- to be written by each task --------------------------------------------------------
    def _task_reset(self) -> None:
        raise NotImplementedError

    def _task_step(self) -> tuple[float, bool]:
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def _get_obs(self) -> np.ndarray:
        raise NotImplementedError
