"""Shared by the LeRobot integration tests: small exports made with vqbet's own writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vqbet.data import EpisodeData, export_lerobot

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from the Hub


def synthetic(cameras: tuple[str, ...] = (), episodes: int = 6, seed: int = 0) -> EpisodeData:
    """Random-walk states, noisy actions; cameras of smooth moving gradients (they survive H.264)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(14, 24, episodes)
    n = int(lengths.sum())
    obs = (np.cumsum(rng.normal(size=(n, 4)), axis=0) * 0.1).astype(np.float32)
    action = rng.normal(size=(n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32]
    t = np.arange(n)[:, None, None]
    images = {}
    for k, camera in enumerate(cameras):
        red = (xx[None] * 4 + t * 3 + 40 * k) % 256
        green = (yy[None] * 4 + t) % 256
        blue = np.broadcast_to((xx + yy)[None] * 2, red.shape)
        images[camera] = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    return EpisodeData(obs=obs, action=action, episode_ends=np.cumsum(lengths), images=images)


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {
        "state": export_lerobot(synthetic(), root / "state", fps=10),
        "cameras": export_lerobot(synthetic(("top", "wrist")), root / "cameras", fps=10),
        # about two episodes a data file and two a video file: LeRobot's file splitting, in small
        "split": export_lerobot(
            synthetic(("top",), seed=1), root / "split", fps=10, data_file_mb=0.0025, video_file_mb=0.025
        ),
    }
