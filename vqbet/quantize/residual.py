"""Residual quantisation: L quantisers applied in turn, each to what the previous ones left over.

With K codes per layer, L layers represent K^L combinations from L*K stored vectors. Nothing here
assumes a particular L.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vqbet.quantize.common import CodebookUsage, QuantizerOutput
from vqbet.quantize.fsq import FSQ
from vqbet.quantize.vq import VectorQuantizer


class Residual(nn.Module):
    """Sum of quantisers over successive residuals; the base of ResidualVQ and ResidualFSQ.

    Layer l quantises r_l = x - sum_{j<l} q_j (previous codes detached, as in the reference
    implementations); the output is sum_l q_l, each term carrying its layer's gradient estimator.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        dim: int,
        project_in: nn.Module | None = None,
        project_out: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if len(layers) < 1:
            raise ValueError("Residual: needs at least one layer")
        self.layers = nn.ModuleList(layers)
        self.dim = dim
        self.codebook_size = int(layers[0].codebook_size)
        self.project_in = project_in if project_in is not None else nn.Identity()
        self.project_out = project_out if project_out is not None else nn.Identity()

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, x: Tensor) -> QuantizerOutput:
        """x (..., dim) -> QuantizerOutput(quantized (..., dim), codes (..., L), loss (), usage (L,))."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__}: expected x (..., {self.dim}), got {tuple(x.shape)}")
        latent = self.project_in(x)
        codes = []
        loss = x.new_zeros(())
        if torch.is_grad_enabled() and latent.requires_grad:
            residual, quantized = latent, torch.zeros_like(latent)
            for layer in self.layers:
                out = layer(residual, with_usage=False)
                quantized = quantized + out.quantized
                residual = residual - out.quantized.detach()
                codes.append(out.codes)
                loss = loss + out.loss
        else:
            # No autograd: one residual and one scratch buffer serve every layer, updated in
            # place (fresh large tensors cost page faults that rival the distance search on CPU).
            residual = latent.float().clone()
            scratch = torch.empty_like(residual)
            for layer in self.layers:
                out = layer(residual, out=scratch, with_usage=False)
                residual.sub_(out.quantized)
                codes.append(out.codes)
                loss = loss + out.loss
            quantized = torch.sub(latent, residual, out=scratch).to(latent.dtype)
        codes = torch.stack(codes, dim=-1)
        running = torch.stack([layer.usage for layer in self.layers])  # a copy: the snapshot
        threshold = self.layers[0].dead_threshold
        return QuantizerOutput(
            quantized=self.project_out(quantized),
            codes=codes,
            loss=loss,
            usage=CodebookUsage(codes.detach(), self.codebook_size, running.detach(), threshold),
        )

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x (..., dim) -> codes (..., L); never changes state, in either mode."""
        residual = self.project_in(x)
        codes = []
        for layer in self.layers:
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.stack(codes, dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes (..., L) int64 -> quantised vectors (..., dim); equals forward's output in eval."""
        if codes.shape[-1] != self.num_layers:
            raise ValueError(
                f"{type(self).__name__}.decode: codes must be (..., {self.num_layers}), "
                f"got {tuple(codes.shape)}"
            )
        total = None
        for layer, layer_codes in zip(self.layers, codes.unbind(-1), strict=True):
            part = layer.decode(layer_codes)
            total = part if total is None else total + part
        return self.project_out(total)


class ResidualVQ(Residual):
    """L VectorQuantizers of `codebook_size` codes on successive residuals.

    Args (keyword-only): dim, codebook_size, num_layers (>= 1), and every VectorQuantizer option
    (ema, decay, kmeans_init, dead_code_threshold, gradient, cosine, ...), applied to each layer.
    """

    def __init__(self, *, dim: int, codebook_size: int, num_layers: int, **vq_options) -> None:
        if num_layers < 1:
            raise ValueError(f"ResidualVQ: num_layers must be >= 1, got {num_layers}")
        layers = [
            VectorQuantizer(dim=dim, codebook_size=codebook_size, **vq_options) for _ in range(num_layers)
        ]
        super().__init__(layers, dim)

    def set_temperature(self, value: float) -> None:
        """Set the Gumbel-softmax temperature of every layer."""
        for layer in self.layers:
            layer.set_temperature(value)


class ResidualFSQ(Residual):
    """L FSQ layers on successive residuals; layer l uses a grid (levels - 1)^l times finer.

    Args (keyword-only): levels (per latent dimension), num_layers (>= 1), dim (input size; linear
    projections in and out when it differs from len(levels)).
    """

    def __init__(self, *, levels: Sequence[int], num_layers: int, dim: int | None = None) -> None:
        if num_layers < 1:
            raise ValueError(f"ResidualFSQ: num_layers must be >= 1, got {num_layers}")
        levels = list(levels)
        first = FSQ(levels=levels)  # validates levels
        step = torch.tensor(levels, dtype=torch.float32) - 1
        layers = [first] + [FSQ(levels=levels, scale=(step**i).tolist()) for i in range(1, num_layers)]
        latent_dim = len(levels)
        dim = latent_dim if dim is None else dim
        projected = dim != latent_dim
        super().__init__(
            layers,
            dim,
            project_in=nn.Linear(dim, latent_dim) if projected else None,
            project_out=nn.Linear(latent_dim, dim) if projected else None,
        )
        self.levels = levels
