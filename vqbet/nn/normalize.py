"""Normalizer: per-feature affine statistics kept as buffers, so they travel with the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

MODES = ("meanstd", "minmax")


class Normalizer(nn.Module):
    """Maps features (..., F) to a standard range and back.

    "meanstd": (x - mean) / std. "minmax": to [-1, 1] by the data's range. Features with (near) zero
    spread get scale 1, so constant dimensions pass through unchanged instead of blowing up.
    """

    def __init__(self, size: int, mode: str = "meanstd", eps: float = 1e-6) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Normalizer: mode must be one of {MODES}, got {mode!r}")
        self.size = size
        self.mode = mode
        self.eps = eps
        self.register_buffer("shift", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, data: Tensor) -> Normalizer:
        """Set the statistics from data (..., F); returns self."""
        flat = torch.as_tensor(data).reshape(-1, self.size).to(torch.float64)
        if flat.shape[0] == 0:
            raise ValueError("Normalizer.fit: data has no rows")
        if not bool(torch.isfinite(flat).all()):
            raise ValueError("Normalizer.fit: data contains NaN or inf")
        if self.mode == "meanstd":
            shift, spread = flat.mean(0), flat.std(0, unbiased=False)
        else:
            lo, hi = flat.amin(0), flat.amax(0)
            shift, spread = (hi + lo) / 2, (hi - lo) / 2
        spread = torch.where(spread < self.eps, torch.ones_like(spread), spread)
        self.shift.copy_(shift.to(self.shift))
        self.scale.copy_(spread.to(self.scale))
        self.fitted.fill_(True)
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """(..., F) raw -> (..., F) normalised."""
        return (x - self.shift) / self.scale

    def unnormalize(self, x: Tensor) -> Tensor:
        """(..., F) normalised -> (..., F) raw."""
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}"
