"""LeRobot env types of vqbet's tasks: `--env.type=vqbetlib_<task>` (multireach, blockpush, pusht,
kitchen), with LeRobot's `obs_type` convention (specs.OBS_TYPES) and LeRobot's feature keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGE, OBS_IMAGES, OBS_STATE

from lerobot_env_vqbetlib.specs import CAMERA_OBS_TYPES, CAMERAS, PACKAGE, TASKS, TaskSpec, check_options

FEATURES_MAP = {
    ACTION: ACTION,
    "agent_pos": OBS_STATE,
    "environment_state": OBS_ENV_STATE,
    "pixels": OBS_IMAGE,
    **{f"pixels/{camera}": f"{OBS_IMAGES}.{camera}" for camera in CAMERAS},
}
"""Raw env keys (as LeRobot's own env configs name them) -> the policy's keys; these are the keys
vqbet's LeRobot export writes (vqbet.data.formats.lerobot_export): observation.state,
observation.images.<camera> (our named cameras), observation.image (the render camera),
observation.environment_state, action."""


@dataclass
class VqbetlibEnv(EnvConfig):
    """Options shared by the vqbet task env types (one registered subclass per task).

    obs_type: "state" | "pixels" | "pixels_agent_pos" | "pixels_state" (see specs.OBS_TYPES).
    cameras: the named cameras of "pixels" / "pixels_agent_pos" ("top", "side").
    environment_state: with a camera obs_type, also observe the task's state vector as
        observation.environment_state (what exports of camera collections hold).
    observation_height / observation_width: every frame's size (the cameras', render()'s).
    episode_length: steps before the episode is cut (vqbet's own limit by default).
    task_description: the task in words, LeRobot's observation["task"] (a sentence per task).
    """

    task: str | None = None
    fps: int = 20
    episode_length: int = 200
    obs_type: str = "state"
    cameras: list[str] = field(default_factory=lambda: ["top"])
    environment_state: bool = False
    observation_height: int = 96
    observation_width: int = 96
    task_description: str | None = None
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=lambda: dict(FEATURES_MAP))

    @property
    def task_spec(self) -> TaskSpec:
        return TASKS[self.type]

    def __post_init__(self) -> None:
        spec = self.task_spec
        if self.task != f"{spec.name}-v0":
            raise ValueError(
                f"{spec.env_type}: --env.task must be {spec.name + '-v0'!r} (one env type per task: "
                f"{sorted(TASKS)}), got {self.task!r}"
            )
        if self.episode_length < 1:
            raise ValueError(f"{spec.env_type}: --env.episode_length must be >= 1, got {self.episode_length}")
        check_options(
            spec,
            self.obs_type,
            self.cameras,
            self.environment_state,
            self.observation_width,
            self.observation_height,
        )
        # Rebuilt from the options, whatever a saved config held: they are the env's, not a choice.
        self.features = self._features()
        self.features_map = dict(FEATURES_MAP)

    def _features(self) -> dict[str, PolicyFeature]:
        """Raw key -> feature; images (H, W, 3) as LeRobot's env configs give them."""
        spec = self.task_spec
        frame = (self.observation_height, self.observation_width, 3)
        out = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(spec.action_dim,))}
        if self.obs_type in CAMERA_OBS_TYPES:
            for camera in self.cameras:
                out[f"pixels/{camera}"] = PolicyFeature(type=FeatureType.VISUAL, shape=frame)
            if self.obs_type == "pixels_agent_pos":
                out["agent_pos"] = PolicyFeature(type=FeatureType.STATE, shape=(2,))
            if self.environment_state:
                out["environment_state"] = PolicyFeature(type=FeatureType.ENV, shape=(spec.state_dim,))
        else:
            out["agent_pos"] = PolicyFeature(type=FeatureType.STATE, shape=(spec.state_dim,))
            if self.obs_type == "pixels_state":
                out["pixels"] = PolicyFeature(type=FeatureType.VISUAL, shape=frame)
        return out

    @property
    def package_name(self) -> str:
        """What LeRobot imports when the gym id is not registered yet (it registers them)."""
        return PACKAGE

    @property
    def gym_id(self) -> str:
        return self.task_spec.gym_id

    @property
    def gym_kwargs(self) -> dict:
        return {
            "obs_type": self.obs_type,
            "cameras": list(self.cameras),
            "environment_state": self.environment_state,
            "width": self.observation_width,
            "height": self.observation_height,
            "task_description": self.task_description,
            "max_episode_steps": self.episode_length,
        }


@EnvConfig.register_subclass("vqbetlib_multireach")
@dataclass
class VqbetlibMultiReachEnv(VqbetlibEnv):
    task: str | None = "MultiReach-v0"
    fps: int = TASKS["vqbetlib_multireach"].fps
    episode_length: int = TASKS["vqbetlib_multireach"].episode_length


@EnvConfig.register_subclass("vqbetlib_blockpush")
@dataclass
class VqbetlibBlockPushEnv(VqbetlibEnv):
    task: str | None = "BlockPush-v0"
    fps: int = TASKS["vqbetlib_blockpush"].fps
    episode_length: int = TASKS["vqbetlib_blockpush"].episode_length


@EnvConfig.register_subclass("vqbetlib_pusht")
@dataclass
class VqbetlibPushTEnv(VqbetlibEnv):
    task: str | None = "PushT-v0"
    fps: int = TASKS["vqbetlib_pusht"].fps
    episode_length: int = TASKS["vqbetlib_pusht"].episode_length


@EnvConfig.register_subclass("vqbetlib_kitchen")
@dataclass
class VqbetlibKitchenEnv(VqbetlibEnv):
    task: str | None = "Kitchen-v0"
    fps: int = TASKS["vqbetlib_kitchen"].fps
    episode_length: int = TASKS["vqbetlib_kitchen"].episode_length
