"""LeRobot's batches in vqbet's layout and back (torch only; no LeRobot import).

LeRobot hands a policy, per feature, the frames at the config's delta indices: with
`observation_delta_indices = [1-To .. 0]` and `action_delta_indices = [1-To .. Ta-1]`,
"observation.state" is (B, To, D) and "action" (B, To+Ta-1, A), with `<key>_is_pad` (B, T) True
where an index fell outside the episode (LeRobot then repeats the episode's first or last frame).
Camera frames are float (B, To, 3, H, W) in [0, 1]. vqbet trains on {"obs": (B, To, D) or
{"state", <camera>: (B, To, H, W, 3) uint8}, "action": (B, To, Ta, A), "action_mask": (B, To, Ta)}
where window step j's chunk starts at j's observation step, clamped to the episode's start
(vqbet.data.TrajectoryWindows): `lerobot_to_vqbet` builds exactly that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

STATE = "observation.state"
ENV_STATE = "observation.environment_state"
ACTION = "action"
IMAGE = "observation.image"
IMAGES = "observation.images."


def camera_name(key: str) -> str:
    """vqbet's name of the camera LeRobot calls `key`: "observation.images.top" -> "top";
    LeRobot's single-camera key "observation.image" -> "image"."""
    if key.startswith(IMAGES):
        return key[len(IMAGES) :]
    if key == IMAGE:
        return "image"
    raise ValueError(
        f"{key!r} is not a LeRobot camera key ('observation.image' or 'observation.images.<name>')"
    )


def to_uint8_frames(frames: Tensor, key: str) -> Tensor:
    """LeRobot's float frames (..., 3, H, W) in [0, 1] -> vqbet's (..., H, W, 3) uint8. LeRobot
    decodes uint8 video and divides by 255, so rounding recovers the decoded bytes exactly."""
    if frames.dtype == torch.uint8:
        raise ValueError(f"{key}: expected LeRobot's float frames in [0, 1], got uint8 {tuple(frames.shape)}")
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"{key}: expected frames (..., 3, H, W), got {tuple(frames.shape)}")
    scaled = (frames.float() * 255.0).round().clamp_(0, 255).to(torch.uint8)
    return scaled.movedim(-3, -1).contiguous()


def observation(batch: dict[str, Any], cameras: dict[str, str]) -> Tensor | dict[str, Tensor]:
    """The observation part of a LeRobot batch ("observation.state" (..., D), camera keys
    (..., 3, H, W) float) as vqbet takes it: the state tensor, or with `cameras` (LeRobot key ->
    vqbet name) a dict {"state": ..., <name>: (..., H, W, 3) uint8}."""
    if STATE not in batch:
        raise ValueError(f"the batch has no '{STATE}'; it has {sorted(batch)}")
    state = batch[STATE]
    if not cameras:
        return state
    missing = [key for key in cameras if key not in batch]
    if missing:
        raise ValueError(
            f"the batch lacks camera(s) {missing} the policy was built with; it has {sorted(batch)}"
        )
    return {"state": state, **{name: to_uint8_frames(batch[key], key) for key, name in cameras.items()}}


def chunk_starts(obs_pad: Tensor | None, batch_size: int, obs_window: int, device: torch.device) -> Tensor:
    """(B, To) index into LeRobot's action sequence where window step j's chunk starts: j, or the
    episode's first step when j's observation is padding (`obs_pad` (B, To), leading Trues)."""
    steps = torch.arange(obs_window, device=device).expand(batch_size, obs_window)
    if obs_pad is None:
        return steps
    first_real = obs_pad.to(torch.long).sum(dim=1, keepdim=True)  # pads only lead: indices <= 0
    return torch.maximum(steps, first_real)


def lerobot_to_vqbet(
    batch: dict[str, Any], obs_window: int, action_chunk: int, cameras: dict[str, str]
) -> dict:
    """A LeRobot training batch -> vqbet's training batch (see the module docstring for shapes)."""
    obs = observation(batch, cameras)
    state = batch[STATE]
    if state.ndim != 3 or state.shape[1] != obs_window:
        raise ValueError(
            f"'{STATE}' must be (B, {obs_window}, D) (n_obs_steps={obs_window}), got {tuple(state.shape)}"
        )
    if ACTION not in batch:
        raise ValueError(f"the batch has no '{ACTION}'; it has {sorted(batch)}")
    action = batch[ACTION]
    span = obs_window + action_chunk - 1
    if action.ndim != 3 or action.shape[1] != span:
        raise ValueError(
            f"'{ACTION}' must be (B, {span}, A) (n_obs_steps + action_chunk - 1 steps), "
            f"got {tuple(action.shape)}"
        )
    b = action.shape[0]
    starts = chunk_starts(batch.get(f"{STATE}_is_pad"), b, obs_window, action.device)
    index = starts[:, :, None] + torch.arange(action_chunk, device=action.device)  # (B, To, Ta)
    rows = torch.arange(b, device=action.device)[:, None, None]
    out: dict[str, Any] = {"obs": obs, "action": action[rows, index]}
    pad = batch.get(f"{ACTION}_is_pad")
    if pad is not None:
        out["action_mask"] = ~pad[rows, index]
    if ENV_STATE in batch:
        out["env_state"] = batch[ENV_STATE]
    return out
