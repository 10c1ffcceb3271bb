"""A vqbet task as LeRobot expects an env: dict observations under LeRobot's raw keys ("agent_pos",
"pixels", "environment_state"), `info["is_success"]` a Python bool, the task in words.

`make_task_env` is the entry point of the gym ids "lerobot_env_vqbetlib/<Task>-v0"; gym.make
puts its TimeLimit outside (LeRobot's rollout reads `_max_episode_steps` off the outer wrapper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.spaces import Box, Dict
from lerobot.envs.utils import NEW_ROLLOUT_OPTION

from lerobot_env_vqbetlib.specs import CAMERA_OBS_TYPES, TASKS, TaskSpec, check_options


def spec_of(task: str) -> TaskSpec:
    """The spec of a vqbet task name ("PushT")."""
    for spec in TASKS.values():
        if spec.name == task:
            return spec
    raise ValueError(f"unknown task {task!r}; known: {[s.name for s in TASKS.values()]}")


def _python(value: Any) -> Any:
    """numpy scalars as Python ones: a vector env stacks bool/int/float infos into typed arrays,
    anything else (np.bool_ included) into an object array that LeRobot's success count misreads."""
    return value.item() if isinstance(value, np.generic) else value


class LeRobotTaskEnv(gym.Wrapper):
    """A vqbet task env (made with the obs_mode that `obs_type` needs) seen as LeRobot's raw keys.

    Observations, per `obs_type` (specs.OBS_TYPES):
        "state": {"agent_pos": (D,) float32}
        "pixels": {"pixels": {camera: (H, W, 3) uint8}}
        "pixels_agent_pos": {"pixels": {camera: (H, W, 3) uint8}, "agent_pos": (2,) float32}
        "pixels_state": {"pixels": (H, W, 3) uint8 (`render()`), "agent_pos": (D,) float32}
    plus, with `environment_state`, {"environment_state": (D,) float32}: the task's state vector.
    `info` is the task's own (`is_success`, `order`, `p1..pn`, progress counts), numpy scalars
    turned into Python ones. `reset` drops LeRobot's rollout marker option: our envs refuse
    options they do not read.
    """

    def __init__(
        self,
        env: gym.Env,
        spec: TaskSpec,
        obs_type: str,
        cameras: Sequence[str],
        environment_state: bool,
        task_description: str,
    ) -> None:
        super().__init__(env)
        self.task_spec = spec
        self.obs_type = obs_type
        self.cameras = list(cameras)
        self.environment_state = environment_state
        self.task = spec.name
        """The task's name (LeRobot reads `task_description` first, then `task`)."""
        self.task_description = task_description
        """The task in words: LeRobot's rollout passes it to the policy as observation["task"]."""
        state = Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32)
        inner = env.observation_space
        spaces: dict[str, gym.Space] = {}
        if obs_type in CAMERA_OBS_TYPES:
            spaces["pixels"] = Dict({c: inner[c] for c in self.cameras})
            if obs_type == "pixels_agent_pos":
                spaces["agent_pos"] = Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
            if environment_state:
                spaces["environment_state"] = state
        else:
            spaces["agent_pos"] = state
            if obs_type == "pixels_state":
                height, width = env.unwrapped.height, env.unwrapped.width
                spaces["pixels"] = Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
        self.observation_space = Dict(spaces)

    def _observation(self, obs: Any) -> dict[str, Any]:
        if self.obs_type in CAMERA_OBS_TYPES:
            out: dict[str, Any] = {"pixels": {c: obs[c] for c in self.cameras}}
            if self.obs_type == "pixels_agent_pos":
                out["agent_pos"] = np.asarray(obs["state"], dtype=np.float32)
            if self.environment_state:
                out["environment_state"] = np.asarray(self.env.unwrapped.state_vector(), dtype=np.float32)
            return out
        out = {"agent_pos": np.asarray(obs, dtype=np.float32)}
        if self.obs_type == "pixels_state":
            # The render camera, as `collect images=true` records it (the export's observation.image).
            out["pixels"] = self.env.render()
        return out

    @staticmethod
    def _info(info: dict[str, Any]) -> dict[str, Any]:
        out = {key: _python(value) for key, value in info.items()}
        out["is_success"] = bool(info.get("is_success", False))
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        options = {k: v for k, v in (options or {}).items() if k != NEW_ROLLOUT_OPTION} or None
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observation(obs), self._info(info)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), self._info(info)


def make_task_env(
    task: str,
    obs_type: str = "state",
    cameras: Sequence[str] = ("top",),
    environment_state: bool = False,
    width: int = 96,
    height: int = 96,
    task_description: str | None = None,
    render_mode: str | None = "rgb_array",
) -> LeRobotTaskEnv:
    """vqbet's `task` ("PushT") wrapped for LeRobot; the options as `VqbetlibEnv`'s (configs.py).

    `render_mode` "rgb_array" (the default) is what lerobot-eval's videos and "pixels_state" need;
    `width` x `height` is the size of every frame, the cameras' and `render()`'s.
    """
    spec = spec_of(task)
    check_options(spec, obs_type, cameras, environment_state, width, height)
    if obs_type == "pixels_state" and render_mode != "rgb_array":
        raise ValueError(f"{spec.env_type}: obs_type='pixels_state' renders frames: render_mode='rgb_array'")
    import envs  # noqa: F401  (registers vqbet's gym ids; loads MuJoCo only now)

    kwargs: dict[str, Any] = {"render_mode": render_mode, "width": width, "height": height}
    if obs_type in CAMERA_OBS_TYPES:
        kwargs["obs_mode"] = "pixels+agent" if obs_type == "pixels_agent_pos" else "pixels"
        kwargs["cameras"] = list(cameras)
    # The task class itself, not gym.make: the outer gym.make puts its TimeLimit around this wrapper.
    env = load_env_creator(gym.spec(f"vqbet/{spec.name}-v0").entry_point)(**kwargs)
    return LeRobotTaskEnv(
        env,
        spec,
        obs_type,
        cameras,
        environment_state,
        spec.description if task_description is None else task_description,
    )
