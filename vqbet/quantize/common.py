"""Shared pieces of the quantisers: the output type, usage statistics, distance search, collectives.

Imports only torch and the standard library.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.distributed as dist
from torch import Tensor


class CodebookUsage:
    """Per-layer codebook statistics of one forward pass: `perplexity`, `used_fraction` and
    `dead_codes`, each of shape (L,); a single quantiser reports L = 1.

    Computed on first access from the pass's codes and a snapshot of the running usage counts, so
    a training step that does not log them pays for none of the dozen tiny ops (on CPU a large
    share of a small residual quantiser's forward pass).
    """

    def __init__(self, codes: Tensor, codebook_size: int, running: Tensor, threshold: float) -> None:
        """codes (..., L) of this pass, running (L, K) usage counts (kept as given: pass a copy)."""
        self._codes = codes
        self._codebook_size = codebook_size
        self._running = running
        self._threshold = threshold

    @cached_property
    def _counts(self) -> Tensor:
        """(L, K) float32 histogram of this pass's codes, one bincount over all layers."""
        k = self._codebook_size
        layers = self._running.numel() // k
        rows = stacked_rows(self._codes.reshape(-1, layers), k)
        return torch.bincount(rows.reshape(-1), minlength=layers * k).reshape(layers, k).float()

    @cached_property
    def perplexity(self) -> Tensor:
        """exp(entropy) of the batch's code histogram: 1 = collapsed, K = uniform."""
        probs = self._counts / self._counts.sum(dim=1, keepdim=True).clamp_min(1.0)
        return torch.special.entr(probs).sum(dim=1).exp()

    @cached_property
    def used_fraction(self) -> Tensor:
        """Fraction of the K codes chosen at least once in this batch."""
        return torch.count_nonzero(self._counts, dim=1) / self._codebook_size

    @cached_property
    def dead_codes(self) -> Tensor:
        """Codes whose running (EMA) usage count is below the dead-code threshold."""
        running = self._running.reshape(-1, self._codebook_size)
        return (running < self._threshold).sum(dim=1).float()

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat `{name/layer: value}` floats, for loggers and progress bars."""
        out: dict[str, float] = {}
        for name in ("perplexity", "used_fraction", "dead_codes"):
            for layer, value in enumerate(getattr(self, name).tolist()):
                out[f"{prefix}{name}/{layer}"] = float(value)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)}" for name in ("perplexity", "used_fraction", "dead_codes")
        )
        return f"CodebookUsage({fields})"


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


def stacked_rows(codes: Tensor, codebook_size: int) -> Tensor:
    """codes (..., L) -> their rows in the L codebooks stacked into one (L * K) table: code + l * K."""
    layers = codes.shape[-1]
    if layers == 1:
        return codes
    return codes + torch.arange(0, layers * codebook_size, codebook_size, device=codes.device)


def batch_usage(codes: Tensor, codebook_size: int, running: Tensor, threshold: float) -> CodebookUsage:
    """Usage statistics of L layers from their codes (..., L) and running usage counts (L, K),
    which are copied (the buffers change at the next training step); computed when first read."""
    return CodebookUsage(codes.detach(), codebook_size, running.detach().clone(), threshold)


def nearest_code(x: Tensor, codebook: Tensor, block_elements: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for each row of x, by squared Euclidean distance, in float32.

    x (N, D), codebook (K, D) -> (codes (N,) int64, offsets (N,) float32), where the squared distance
    to the chosen code is `offsets + |x|^2` (see `nearest_rows`). Always float32, also inside an
    autocast region: bf16 distances pick wrong codes.
    """
    with autocast_disabled(x.device.type):
        codebook = codebook.float()
        return nearest_rows(x.float(), codebook.t(), codebook.square().sum(dim=1), block_elements)


def nearest_rows(
    x: Tensor, codebook_t: Tensor, e_sq: Tensor, block_elements: int = 1 << 22
) -> tuple[Tensor, Tensor]:
    """`nearest_code` from a transposed float32 codebook (D, K) and its squared row norms (K,),
    with autocast already off (the caller's job): for callers that search several times per
    codebook or per autocast region. The distance |x|^2 - 2 x.e + |e|^2 is a matmul; |x|^2 does
    not change the argmin and is left to callers that need it. Rows go in blocks of about
    `block_elements` distances (16 MB by default) so memory stays bounded for any N*K. `torch.min`
    with indices is used rather than `argmin`: it is faster on CPU.
    """
    n, k = x.shape[0], codebook_t.shape[1]
    rows = max(1, block_elements // k)
    if n <= rows:
        values, codes = row_min(torch.addmm(e_sq, x, codebook_t, alpha=-2.0))
        return codes, values
    codes = torch.empty(n, dtype=torch.long, device=x.device)
    values = torch.empty(n, device=x.device)
    block = torch.empty(rows, k, device=x.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        part = block[: stop - start]
        torch.addmm(e_sq, x[start:stop], codebook_t, alpha=-2.0, out=part)
        values[start:stop], codes[start:stop] = row_min(part)
    return codes, values


def autocast_disabled(device_type: str) -> AbstractContextManager:
    """A context with autocast off on `device_type`; a no-op one where it is off already
    (entering `torch.autocast` costs a few microseconds, a noticeable share of a small
    quantiser's call)."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type here
        enabled = True
    return torch.autocast(device_type=device_type, enabled=False) if enabled else nullcontext()


ROW_MIN_GROUP = 64
"""Group width of `row_min`'s two-level search."""


def row_min(d: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's minimum of d (N, K): (values (N,), indices (N,) int64), as `d.min(dim=1)`, the
    first index among equal minima.

    On CPU, `min` with indices runs a scalar loop over the row while `amin` vectorises, so for
    rows of at least 4 groups of ROW_MIN_GROUP the search is in two levels: the best group by
    `amin`, then the index within that one group (1/64 of the row) by `min`. CUDA and short rows
    take `min` directly.
    """
    n, k = d.shape
    g = ROW_MIN_GROUP
    if k < 4 * g or k % g or d.device.type != "cpu" or not d.is_contiguous():
        return d.min(dim=1)
    groups = d.view(n, k // g, g)
    best = groups.amin(dim=2).argmin(dim=1)  # (N,): the first group holding the row's minimum
    values, within = groups[torch.arange(n, device=d.device), best].min(dim=1)
    return values, best * g + within


def squared_distances(x: Tensor, codebook: Tensor) -> Tensor:
    """Full squared Euclidean distances (N, K) in float32, for the Gumbel relaxation."""
    with autocast_disabled(x.device.type):
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
