"""Camera frames as observations: `obs_mode="pixels"` (the cameras alone) or `"pixels+agent"` (the
cameras plus the agent's own position, as Diffusion Policy's image Push-T) for the planar tasks.

The frames are rendered offscreen (`MUJOCO_GL=egl` on a headless machine) by a `mujoco.Renderer`
of their own, from named free cameras (`CAMERAS`), at `width` x `height` (96 x 96 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
from gymnasium.spaces import Box, Dict

OBS_MODES = ("state", "pixels", "pixels+agent")
CAMERAS = {
    "top": {"distance": 3.0, "elevation": -90.0, "azimuth": 90.0, "lookat": (0.0, 0.0, 0.0)},
    "side": {"distance": 3.0, "elevation": -45.0, "azimuth": 90.0, "lookat": (0.0, 0.0, 0.0)},
}
"""The planar tasks' cameras: straight down, and from the front at 45 degrees."""


def check_obs_mode(obs_mode: str, cameras: Sequence[str]) -> list[str]:
    """The camera names, or a ValueError naming a bad mode or camera."""
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
    cameras = [str(c) for c in cameras]
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown or (obs_mode != "state" and not cameras) or len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras must be distinct names out of {sorted(CAMERAS)}, got {cameras}")
    return cameras


class CameraRig:
    """Renders `cameras` of a model's current state: {name: (height, width, 3) uint8}."""

    def __init__(self, model: mujoco.MjModel, cameras: Sequence[str], width: int, height: int) -> None:
        self.renderer = mujoco.Renderer(model, height=height, width=width)
        self.cameras: dict[str, mujoco.MjvCamera] = {}
        for name in cameras:
            camera = mujoco.MjvCamera()
            spec = CAMERAS[name]
            camera.distance, camera.elevation, camera.azimuth = (
                spec["distance"],
                spec["elevation"],
                spec["azimuth"],
            )
            camera.lookat[:] = spec["lookat"]
            self.cameras[name] = camera
        self.shape = (height, width, 3)

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        frames = {}
        for name, camera in self.cameras.items():
            self.renderer.update_scene(data, camera=camera)
            frames[name] = self.renderer.render().copy()
        return frames

    def space(self, state: Box | None) -> Dict:
        """The observation space: the cameras' frames, and `state` when given."""
        spaces: dict[str, Any] = {} if state is None else {"state": state}
        for name in self.cameras:
            spaces[name] = Box(0, 255, shape=self.shape, dtype=np.uint8)
        return Dict(spaces)

    def close(self) -> None:
        self.renderer.close()
