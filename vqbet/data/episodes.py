"""Demonstrations in memory: flat per-step arrays plus episode boundaries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeData:
    """All steps of all episodes, concatenated.

    obs (N, D) float, action (N, A) float, episode_ends (E,) int64: the exclusive end index of each
    episode, strictly increasing, last one == N. images maps camera names to (N, H, W, 3) uint8
    frames (arrays, lazily read HDF5 datasets or video frames); `image` is the camera named "image"
    (the one camera of the formats that read one). attrs holds metadata (task id, expert, seeds,
    versions, ...). obs is the state part of an observation; a policy with cameras sees
    {"state": obs, <camera>: frames}. env_state (N, S) float, optional: the simulator's full state
    at each step (what obs_mode="state" observes), kept beside camera observations as a training
    target (vision.env_state_weight), never a policy input.
    """

    obs: np.ndarray
    action: np.ndarray
    episode_ends: np.ndarray
    images: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    env_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.episode_ends = np.asarray(self.episode_ends, dtype=np.int64)
        self.images = dict(self.images or {})
        validate(self)

    @property
    def image(self) -> Any:
        """The frames of the camera named "image", or None."""
        return self.images.get("image")

    @image.setter
    def image(self, frames: Any) -> None:
        if frames is None:
            self.images.pop("image", None)
        else:
            self.images["image"] = frames

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.obs.shape[0])

    @property
    def episode_starts(self) -> np.ndarray:
        """(E,) first index of each episode."""
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    def content_hash(self) -> str:
        """sha256 of obs, action, episode_ends (as float32 / int64) and env_state where there is
        one: the same demonstrations give the same hash whatever file layout held them."""
        digest = hashlib.sha256()
        arrays = [(self.obs, np.float32), (self.action, np.float32), (self.episode_ends, np.int64)]
        if self.env_state is not None:
            arrays.append((self.env_state, np.float32))
        for array, dtype in arrays:
            digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
        return digest.hexdigest()

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """The steps of one episode: {"obs": (T, D), "action": (T, A)}."""
        start, end = self.episode_starts[index], self.episode_ends[index]
        return {"obs": self.obs[start:end], "action": self.action[start:end]}

    @staticmethod
    def from_episodes(
        episodes: list[dict[str, np.ndarray]], attrs: dict[str, Any] | None = None
    ) -> EpisodeData:
        """Concatenate a list of {"obs": (T, D), "action": (T, A)[, "images": {camera: (T, H, W, 3)}]
        [, "env_state": (T, S)]} (a camera, or env_state, is kept when every episode has it)."""
        if not episodes:
            raise ValueError("from_episodes: no episodes given")
        lengths = [len(e["obs"]) for e in episodes]
        cameras = set.intersection(*(set(e.get("images", {})) for e in episodes))
        images = {
            camera: np.concatenate([e["images"][camera] for e in episodes]).astype(np.uint8)
            for camera in sorted(cameras)
        }
        return EpisodeData(
            obs=np.concatenate([e["obs"] for e in episodes]).astype(np.float32),
            action=np.concatenate([e["action"] for e in episodes]).astype(np.float32),
            episode_ends=np.cumsum(lengths),
            images=images,
            attrs=dict(attrs or {}),
            env_state=(
                np.concatenate([e["env_state"] for e in episodes]).astype(np.float32)
                if all(e.get("env_state") is not None for e in episodes)
                else None
            ),
        )


def validate(data: EpisodeData) -> None:
    """Raise ValueError naming the source and key for any inconsistency."""
    src = data.source
    for key in ("obs", "action", "env_state"):
        array = getattr(data, key)
        if array is None and key == "env_state":
            continue
        if array.ndim != 2:
            raise ValueError(f"{src}: '{key}' must be 2-D (steps, features), got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{src}: '{key}' must be floating point, got {array.dtype}")
        if not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))[0]
            raise ValueError(f"{src}: '{key}' holds NaN or inf (first at row {bad[0]})")
    n = data.obs.shape[0]
    for key in ("action", "env_state"):
        array = getattr(data, key)
        if array is not None and array.shape[0] != n:
            raise ValueError(
                f"{src}: 'obs' has {n} steps but '{key}' has {array.shape[0]}: lengths must match"
            )
    ends = data.episode_ends
    if ends.ndim != 1 or ends.shape[0] == 0:
        raise ValueError(f"{src}: 'episode_ends' must list at least one episode, got shape {ends.shape}")
    if (np.diff(ends) <= 0).any() or ends[0] <= 0:
        raise ValueError(f"{src}: 'episode_ends' must be strictly increasing and positive")
    if ends[-1] != n:
        raise ValueError(f"{src}: 'episode_ends' ends at {ends[-1]}, but there are {n} steps")
    for camera, frames in data.images.items():
        shape = tuple(frames.shape)
        if len(shape) != 4 or shape[0] != n or shape[-1] != 3:
            raise ValueError(f"{src}: camera {camera!r} must be ({n}, H, W, 3) images, got {shape}")


MIN_SCALE = 0.01
"""Smallest deviation `check_outliers` measures distances in (units of the data)."""


def check_outliers(data: EpisodeData, max_std: float) -> None:
    """Raise ValueError naming the source, key, row, column and value of the worst entry of `obs`
    or `action` that lies more than `max_std` standard deviations from its column's mean (0: no
    check). Mean and deviation come from the central 99.8% of each column, so one absurd value
    (a 1e30 from a unit bug or a sensor glitch) cannot hide itself by inflating them; a column
    that is constant there (a rare event) uses its full statistics instead. The deviation is
    floored at `MIN_SCALE`: a column that is sensor noise of 3e-5 with a few real events of 1.5 (an
    object's velocity when the arm knocks it, in Kitchen) is data, not an outlier."""
    if max_std <= 0:
        return
    for key in ("obs", "action"):
        values = np.asarray(getattr(data, key), dtype=np.float64)
        low, high = np.quantile(values, [0.001, 0.999], axis=0)
        central = np.where((values >= low) & (values <= high), values, np.nan)
        mean, std = np.nanmean(central, axis=0), np.nanstd(central, axis=0)
        flat = std <= 1e-12
        mean[flat], std[flat] = values[:, flat].mean(0), values[:, flat].std(0)
        z = np.abs(values - mean) / np.maximum(std, MIN_SCALE)
        row, col = np.unravel_index(int(np.argmax(z)), z.shape)
        if z[row, col] > max_std:
            raise ValueError(
                f"{data.source}: '{key}' row {row}, column {col} holds {values[row, col]:.6g}, "
                f"{z[row, col]:.3g} standard deviations from that column's mean {mean[col]:.4g} (std "
                f"{std[col]:.4g}); an outlier like this ruins the normaliser. Fix or drop that episode, "
                f"or raise data.outlier_std (now {max_std:g}; 0 turns the check off)."
            )
