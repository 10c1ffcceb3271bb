"""Per-world seeded uniform noise on the device, without a generator object per world.

A world's noise is a hash of (its episode key, the observation's index in the episode, the
coordinate): the same seed gives the same noise whatever the world count, the slot the episode
runs in or the device, and no state is carried between steps. The hash is a 32-bit integer mixer
(the "lowbias32" finaliser, with multipliers below 2**31 so that int64 products never overflow).
"""

from __future__ import annotations

import numpy as np
import torch

_MASK = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """32-bit avalanche of int64 values in [0, 2**32)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x6C8E9CF5) & _MASK
    return x ^ (x >> 16)


def episode_keys(seeds: list[int] | np.ndarray) -> np.ndarray:
    """Noise keys (N,) int64 in [0, 2**32) of episodes seeded by `seeds` (any Python ints >= 0)."""
    seeds = [int(s) for s in seeds]
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be >= 0, got {min(seeds)}")
    low = torch.tensor([s & _MASK for s in seeds], dtype=torch.int64)
    high = torch.tensor([(s >> 32) & _MASK for s in seeds], dtype=torch.int64)
    return _mix(low ^ _mix(high + 0x3C6EF372)).numpy()


def next_keys(keys: torch.Tensor) -> torch.Tensor:
    """Keys (N,) of the episodes that follow `keys` (N,) in the same worlds (an autoreset without a
    seed): deterministic, so a seeded run stays reproducible."""
    return _mix(keys + 0x1B873593)


def uniform(keys: torch.Tensor, counters: torch.Tensor, size: int) -> torch.Tensor:
    """U(-1, 1) noise (N, size) float32 for episode `keys` (N,) at observation `counters` (N,)."""
    element = torch.arange(size, device=keys.device, dtype=torch.int64)
    x = _mix(keys[:, None] ^ _mix(counters[:, None] * 0x2545F491 + 0x68E31DA4))
    x = _mix(x ^ (element[None] * 0x27D4EB2F))
    # 24 random bits: exactly representable in float32
    return ((x >> 8).to(torch.float32) + 0.5) * (2.0 / 2**24) - 1.0
