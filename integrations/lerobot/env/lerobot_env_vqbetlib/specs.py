"""What each task looks like to LeRobot, and the checks of the options (shared by the configs and
the env). Plain Python: LeRobot imports this plug-in at the start of every command, so MuJoCo and
the tasks load only when an env is made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OBS_TYPES = ("state", "pixels", "pixels_agent_pos", "pixels_state")
"""What an env observes, as LeRobot's raw keys (`preprocess_observation` renames them):

- "state": "agent_pos" -> observation.state, the task's state vector (D,).
- "pixels": "pixels"/<camera> -> observation.images.<camera>, (H, W, 3) uint8 per camera.
- "pixels_agent_pos": the cameras, and "agent_pos" -> observation.state, the agent's (x, y).
- "pixels_state": "pixels" -> observation.image, the env's render camera (H, W, 3) uint8, and
  "agent_pos" -> observation.state, the task's state vector (D,).
"""
CAMERA_OBS_TYPES = ("pixels", "pixels_agent_pos")
"""The obs types that observe the task's named cameras (`cameras`); planar tasks only."""
CAMERAS = ("top", "side")
"""The planar tasks' named cameras (envs.cameras.CAMERAS; a test keeps the two equal)."""
PACKAGE = "lerobot_env_vqbetlib"


@dataclass(frozen=True)
class TaskSpec:
    """One task: its vqbet name, sizes, LeRobot env type and defaults."""

    name: str  # vqbet's task name: gym id "vqbet/<name>-v0"
    env_type: str  # LeRobot's --env.type
    state_dim: int  # the state vector (obs_mode "state")
    action_dim: int
    episode_length: int  # vqbet's max_episode_steps
    fps: int  # steps per second (the env's render_fps, what collections and exports record)
    has_cameras: bool  # whether the env takes obs_mode "pixels" / "pixels+agent"
    description: str  # the task in words (LeRobot's observation["task"])

    @property
    def gym_id(self) -> str:
        return f"{PACKAGE}/{self.name}-v0"


TASKS: dict[str, TaskSpec] = {
    spec.env_type: spec
    for spec in (
        TaskSpec(
            "MultiReach",
            "vqbetlib_multireach",
            6,
            2,
            200,
            20,
            True,
            "visit the four goal pads, in any order",
        ),
        TaskSpec(
            "BlockPush",
            "vqbetlib_blockpush",
            10,
            2,
            350,
            20,
            True,
            "push the two blocks into the two target zones, one block per zone",
        ),
        TaskSpec("PushT", "vqbetlib_pusht", 6, 2, 600, 20, True, "push the T block onto the goal T"),
        TaskSpec(
            "Kitchen",
            "vqbetlib_kitchen",
            59,
            9,
            600,
            12,
            False,
            "open the microwave, slide the cabinet, switch on the light and open the hinge cabinet",
        ),
    )
}
"""By LeRobot env type."""


def check_options(
    spec: TaskSpec,
    obs_type: str,
    cameras: Sequence[str],
    environment_state: bool,
    width: int,
    height: int,
) -> None:
    """A ValueError naming the option (as `--env.<option>`) that `spec`'s task cannot take."""
    where = f"{spec.env_type}: --env."
    if obs_type not in OBS_TYPES:
        raise ValueError(f"{where}obs_type must be one of {list(OBS_TYPES)}, got {obs_type!r}")
    if obs_type in CAMERA_OBS_TYPES and not spec.has_cameras:
        takes = [t for t in OBS_TYPES if t not in CAMERA_OBS_TYPES]
        raise ValueError(
            f"{where}obs_type={obs_type!r} is not supported by {spec.name}: it has no named cameras; "
            f"it takes obs_type in {takes} (pixels_state observes its render camera)"
        )
    if obs_type in CAMERA_OBS_TYPES:
        names = [str(c) for c in cameras]
        unknown = [c for c in names if c not in CAMERAS]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"{where}cameras must be distinct names out of {list(CAMERAS)}, got {list(cameras)}"
            )
    if environment_state and obs_type not in CAMERA_OBS_TYPES:
        raise ValueError(
            f"{where}environment_state=true adds the state vector to camera observations "
            f"(obs_type in {list(CAMERA_OBS_TYPES)}); with obs_type={obs_type!r} it is "
            "observation.state already"
        )
    for option, size in (("observation_width", width), ("observation_height", height)):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{where}{option} must be a positive integer, got {size!r}")
