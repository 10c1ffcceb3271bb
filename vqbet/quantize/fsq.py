"""Finite scalar quantisation (Mentzer et al. 2023): a fixed grid per dimension, no codebook to learn.

Each of the d = len(levels) dimensions is squashed by tanh into a range holding `levels[i]` integers
and rounded (straight-through). The implied codebook has prod(levels) codes and cannot collapse by
construction, though some grid cells may be left unused by the data; usage is measured as for VQ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vqbet.quantize.common import QuantizerOutput, all_reduce_sum_, batch_usage


def round_ste(z: Tensor) -> Tensor:
    """Round to the nearest integer in value, identity in gradient."""
    return z + (z.round() - z).detach()


class FSQ(nn.Module):
    """Finite scalar quantiser.

    Args (keyword-only):
        levels: grid size per latent dimension, each >= 2 (e.g. [8, 5, 5, 5] -> 1000 codes).
        dim: input size; when it differs from len(levels), linear maps project in and out.
        scale: the grid is divided by this, per dimension or for all (residual FSQ uses a finer
            grid at every layer).
        usage_decay: EMA decay of the running per-code usage (for the dead-code count).
    """

    def __init__(
        self,
        *,
        levels: Sequence[int],
        dim: int | None = None,
        scale: float | Sequence[float] = 1.0,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        levels = list(levels)
        if not levels or any((not isinstance(v, int)) or v < 2 for v in levels):
            raise ValueError(f"FSQ: levels must be a non-empty list of integers >= 2, got {levels}")
        scale_t = torch.as_tensor(scale, dtype=torch.float32).expand(len(levels)).clone()
        if not bool((scale_t > 0).all()):
            raise ValueError(f"FSQ: scale must be > 0, got {scale}")
        self.levels = levels
        self.latent_dim = len(levels)
        self.dim = dim if dim is not None else self.latent_dim
        self.codebook_size = math.prod(levels)
        self.usage_decay = usage_decay
        needs_projection = self.dim != self.latent_dim
        self.project_in = nn.Linear(self.dim, self.latent_dim) if needs_projection else nn.Identity()
        self.project_out = nn.Linear(self.latent_dim, self.dim) if needs_projection else nn.Identity()
        lv = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.long), dim=0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("scale", scale_t, persistent=False)
        self.register_buffer("usage", torch.ones(self.codebook_size))

    def bound(self, z: Tensor) -> Tensor:
        """Squash z (..., d) so that rounding yields exactly `levels[i]` values per dimension."""
        half_l = (self._levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _grid_to_codes(self, grid: Tensor) -> Tensor:
        """Integer grid values (..., d), centred on 0, -> code indices (...,)."""
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        digits = (grid + half_width).round().long()
        return (digits * self._basis).sum(dim=-1)

    def _codes_to_latent(self, codes: Tensor) -> Tensor:
        """Code indices (...,) -> normalised grid points (..., d) in [-1, 1], times 1/scale."""
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        digits = torch.div(codes[..., None], self._basis, rounding_mode="floor") % self._levels.long()
        return (digits.float() - half_width) / half_width / self.scale

    def encode(self, x: Tensor) -> Tensor:
        """x (..., dim) -> codes (...,); never changes state."""
        return self._grid_to_codes(self.bound(self.project_in(x) * self.scale).round())

    def decode(self, codes: Tensor) -> Tensor:
        """codes (...,) int64 -> quantised vectors (..., dim)."""
        if codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"FSQ.decode: codes must be integer, got {codes.dtype}")
        # Eagerly only: a traced program (torch.export) takes the codes its own heads chose.
        checked = codes.numel() and not torch.compiler.is_compiling()
        if checked and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"FSQ.decode: codes must lie in [0, {self.codebook_size})")
        return self.project_out(self._codes_to_latent(codes.long()))

    def forward(self, x: Tensor, *, with_usage: bool = True) -> QuantizerOutput:
        """x (..., dim) -> QuantizerOutput(quantized (..., dim), codes (...,), loss 0, usage (1,)).

        With `with_usage=False`, usage is None (a residual quantiser measures all layers at once).
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"FSQ: expected x (..., {self.dim}), got {tuple(x.shape)}")
        z = self.project_in(x) * self.scale
        grid = round_ste(self.bound(z))
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        latent = grid / half_width / self.scale
        codes = self._grid_to_codes(grid.detach())
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(codes.reshape(-1), minlength=self.codebook_size).float()
                all_reduce_sum_(counts)
                self.usage.lerp_(counts, 1.0 - self.usage_decay)
        return QuantizerOutput(
            quantized=self.project_out(latent),
            codes=codes,
            loss=x.new_zeros(()),
            usage=batch_usage(codes, self.codebook_size, self.usage, self.dead_threshold)
            if with_usage
            else None,
        )

    dead_threshold = 1e-3
    """Running usage below which a grid cell counts as dead (never used of late)."""

    def extra_repr(self) -> str:
        return f"levels={self.levels}, dim={self.dim}, scale={self.scale.tolist()}"
