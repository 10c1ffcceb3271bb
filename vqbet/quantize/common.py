"""Shared pieces of the quantisers: the output type, usage statistics, distance search, collectives.

Imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class CodebookUsage:
    """Per-layer codebook statistics of one forward pass; each field has shape (L,).

    A single quantiser reports L = 1.
    """

    perplexity: Tensor
    """exp(entropy) of the batch's code histogram: 1 = collapsed, K = uniform."""
    used_fraction: Tensor
    """Fraction of the K codes chosen at least once in this batch."""
    dead_codes: Tensor
    """Codes whose running (EMA) usage count is below the dead-code threshold."""

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat `{name/layer: value}` floats, for loggers and progress bars."""
        out: dict[str, float] = {}
        for name in ("perplexity", "used_fraction", "dead_codes"):
            for layer, value in enumerate(getattr(self, name).tolist()):
                out[f"{prefix}{name}/{layer}"] = float(value)
        return out


@dataclass
class QuantizerOutput:
    """What every quantiser's forward returns.

    `quantized` has the input's shape and carries the chosen gradient estimator; `codes` is
    (..., ) for a single quantiser and (..., L) for a residual one; `loss` is a scalar
    (codebook + commitment terms, zero where nothing is learned).
    """

    quantized: Tensor
    codes: Tensor
    loss: Tensor
    usage: CodebookUsage | None
    """None only when the caller asked for no usage (`with_usage=False`)."""


def batch_usage(codes: Tensor, codebook_size: int, running: Tensor, threshold: float) -> CodebookUsage:
    """Usage statistics of L layers from their codes (..., L) and running usage counts (L, K).

    One bincount over all layers and a few (L, K) reductions: cheap enough for every step.
    """
    layers = running.numel() // codebook_size
    codes = codes.reshape(-1, layers)
    if layers > 1:
        codes = codes + torch.arange(0, layers * codebook_size, codebook_size, device=codes.device)
    counts = torch.bincount(codes.reshape(-1), minlength=layers * codebook_size)
    counts = counts.reshape(layers, codebook_size).to(torch.float32)
    probs = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    return CodebookUsage(
        perplexity=torch.special.entr(probs).sum(dim=1).exp(),
        used_fraction=torch.count_nonzero(counts, dim=1) / codebook_size,
        dead_codes=(running.reshape(layers, codebook_size) < threshold).sum(dim=1).float(),
    )


def nearest_code(x: Tensor, codebook: Tensor, block_elements: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for each row of x, by squared Euclidean distance.

    x (N, D), codebook (K, D) -> (codes (N,) int64, offsets (N,) float32), where the squared distance
    to the chosen code is `offsets + |x|^2`. The distance |x|^2 - 2 x.e + |e|^2 is a matmul; |x|^2
    does not change the argmin and is left to callers that need it. Rows go in blocks of about
    `block_elements` distances (16 MB by default) so memory stays bounded for any N*K. `torch.min`
    with indices is used rather than `argmin`: on CPU it is ~1.4x faster. Always float32: bf16
    distances pick wrong codes.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        codebook = codebook.float()
        e_sq = codebook.square().sum(dim=1)  # (K,)
        codebook_t = codebook.t()
        n, k = x.shape[0], codebook.shape[0]
        rows = max(1, block_elements // k)
        if n <= rows:
            values, codes = torch.addmm(e_sq, x, codebook_t, alpha=-2.0).min(dim=1)
        else:
            codes = torch.empty(n, dtype=torch.long, device=x.device)
            values = torch.empty(n, device=x.device)
            block = torch.empty(rows, k, device=x.device)
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                part = block[: stop - start]
                torch.addmm(e_sq, x[start:stop], codebook_t, alpha=-2.0, out=part)
                torch.min(part, dim=1, out=(values[start:stop], codes[start:stop]))
        return codes, values


def squared_distances(x: Tensor, codebook: Tensor) -> Tensor:
    """Full squared Euclidean distances (N, K) in float32, for the Gumbel relaxation."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        codebook = codebook.float()
        return (
            x.square().sum(1, keepdim=True) - 2.0 * x @ codebook.t() + codebook.square().sum(1)[None, :]
        ).clamp_min(0.0)


def distributed() -> bool:
    """True inside an initialised torch.distributed process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum `tensor` over all ranks in place (no-op outside DDP). Every rank must call it."""
    if distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite `tensor` on every rank with rank `src`'s copy (no-op outside DDP)."""
    if distributed():
        dist.broadcast(tensor, src=src)
    return tensor
