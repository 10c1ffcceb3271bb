"""VectorQuantizer: one codebook of K vectors, with the remedies against codebook collapse.

x (..., D) -> nearest of K codes. Gradient estimators: straight-through ("ste"), the rotation trick
("rotation", Fifty et al. 2024) or a hard Gumbel-softmax relaxation ("gumbel"). Codebook learning: by
gradient (codebook loss) or by exponential moving averages ("ema", van den Oord et al. 2017). Collapse
remedies: k-means initialisation from the first training batch and dead-code reset from recent inputs.
All fitted state is in buffers, changed in place and only in training mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.quantize.common import (
    QuantizerOutput,
    all_reduce_sum_,
    batch_usage,
    broadcast_,
    nearest_code,
    squared_distances,
)
from vqbet.quantize.kmeans import kmeans

GRADIENTS = ("ste", "rotation", "gumbel")


def rotate_to(x: Tensor, q: Tensor) -> Tensor:
    """Rotation trick: returns q in value, with x's gradient passed through a fixed rotation+scale.

    x, q (N, D). R maps x/|x| onto q/|q| (Householder-style, built from detached vectors) and
    s = |q|/|x| is detached, so the output is s * R x = q and d(out)/dx = s * R.
    """
    eps = 1e-8
    x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (x / x_norm).detach()
    q_hat = (q / q_norm).detach()
    w = F.normalize(u + q_hat, dim=-1, eps=eps).detach()
    rotated = x - 2.0 * (x * w).sum(-1, keepdim=True) * w + 2.0 * (x * u).sum(-1, keepdim=True) * q_hat
    return rotated * (q_norm / x_norm).detach()


class VectorQuantizer(nn.Module):
    """A single codebook (K, D) with nearest-code lookup.

    Args (keyword-only):
        dim: vector size D.
        codebook_size: number of codes K (>= 2).
        commitment_weight: beta of the commitment term beta * |x - sg(q)|^2.
        ema: learn the codebook by EMA of assigned vectors instead of by gradient.
        decay: EMA decay of codebook sums and counts.
        eps: Laplace smoothing of EMA counts, so a code with no assignments keeps a finite centre.
        kmeans_init: on the first training batch, set the codebook by k-means on that batch.
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: codes whose running usage (EMA of assignments per batch) falls below
            this are re-seeded from the current batch; 0 disables the reset.
        usage_decay: EMA decay of the running usage counts.
        gradient: "ste", "rotation" or "gumbel".
        gumbel_temperature: initial softmax temperature for "gumbel" (see `set_temperature`).
        cosine: compare directions only (inputs and codes on the unit sphere).
        block_elements: distances per block of the nearest-code search (bounds memory).
    """

    def __init__(
        self,
        *,
        dim: int,
        codebook_size: int,
        commitment_weight: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        usage_decay: float = 0.99,
        gradient: str = "ste",
        gumbel_temperature: float = 1.0,
        cosine: bool = False,
        block_elements: int = 1 << 22,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"VectorQuantizer: dim must be >= 1, got {dim}")
        if codebook_size < 2:
            raise ValueError(f"VectorQuantizer: codebook_size must be >= 2, got {codebook_size}")
        if gradient not in GRADIENTS:
            raise ValueError(f"VectorQuantizer: gradient must be one of {GRADIENTS}, got {gradient!r}")
        if not 0.0 <= decay < 1.0 or not 0.0 <= usage_decay < 1.0:
            raise ValueError(f"VectorQuantizer: decays must be in [0, 1), got {decay}, {usage_decay}")
        if gumbel_temperature <= 0:
            raise ValueError(f"VectorQuantizer: gumbel_temperature must be > 0, got {gumbel_temperature}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.ema = ema
        self.decay = decay
        self.eps = eps
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.gradient = gradient
        self.cosine = cosine
        self.block_elements = block_elements

        init = torch.empty(codebook_size, dim)
        nn.init.kaiming_uniform_(init, a=math.sqrt(5))
        if cosine:
            init = F.normalize(init, dim=-1)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # Running assignments per batch, for dead-code detection and the usage statistics.
        self.register_buffer("usage", torch.ones(codebook_size))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("temperature", torch.tensor(float(gumbel_temperature)))

    # -- lookups ---------------------------------------------------------------------------
    def _normalize(self, flat: Tensor) -> Tensor:
        return F.normalize(flat, dim=-1) if self.cosine else flat

    def prepare(self, x: Tensor) -> Tensor:
        """x (..., D) -> the rows (N, D) the codebook is compared with (unit vectors when cosine).
        In training mode, the first call k-means-initialises the codebook from them when asked."""
        flat = self._normalize(x.reshape(-1, self.dim))
        if self.training and self.kmeans_init and not bool(self.initialized):
            self._kmeans_init_(flat)
        return flat

    def assign(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Prepared rows (N, D) -> (codes (N,), loss ()): the nearest codes and the value of the
        loss forward reports without autograd, weight * mean |x - q|^2, from the search's offsets
        (see `search_loss`). Changes no state."""
        codes, offsets = nearest_code(flat, self.codebook.detach(), self.block_elements)
        return codes, search_loss(squared_error(offsets, flat), self.loss_weight, flat.numel())

    @property
    def loss_weight(self) -> float:
        """Weight of mean |x - q|^2 in the loss value: the commitment weight, plus 1 for the
        codebook term when the codebook learns by gradient."""
        return self.commitment_weight + (0.0 if self.ema else 1.0)

    def encode(self, x: Tensor) -> Tensor:
        """x (..., D) -> codes (...,) of the nearest codebook rows; never changes state."""
        flat = self._normalize(x.reshape(-1, self.dim))
        codes, _ = nearest_code(flat, self.codebook.detach(), self.block_elements)
        return codes.reshape(x.shape[:-1])

    def decode(self, codes: Tensor) -> Tensor:
        """codes (...,) int64 -> code vectors (..., D)."""
        if codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"VectorQuantizer.decode: codes must be integer, got {codes.dtype}")
        return F.embedding(codes, self.codebook)

    def set_temperature(self, value: float) -> None:
        """Set the Gumbel-softmax temperature (kept in a buffer, so checkpoints carry it)."""
        if value <= 0:
            raise ValueError(f"VectorQuantizer: temperature must be > 0, got {value}")
        self.temperature.fill_(value)

    # -- fitted-state updates (training mode only) -----------------------------------------
    @torch.no_grad()
    def _kmeans_init_(self, x: Tensor) -> None:
        centres, counts = kmeans(x, self.codebook_size, iters=self.kmeans_iters, cosine=self.cosine)
        # All ranks must start from the same codebook: rank 0's k-means wins.
        broadcast_(centres)
        broadcast_(counts)
        self.codebook.data.copy_(centres)
        if self.ema:
            # Sums and counts must describe the same centres, or the first EMA step moves them.
            self.ema_count.copy_(counts.clamp_min(1.0))
            self.ema_sum.copy_(centres * self.ema_count[:, None])
        self.usage.copy_(counts)
        self.initialized.fill_(True)

    @torch.no_grad()
    def update_(self, x: Tensor, codes: Tensor) -> None:
        """Training-mode state updates from prepared rows x (N, D) and their codes (N,): running
        usage, EMA sums and counts (and the codebook they imply), dead-code reset."""
        counts = torch.bincount(codes, minlength=self.codebook_size).float()[None]
        sums = None
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, x.float())[None]
        update_layers_([self], counts, sums, lambda _, pick: x[pick], x.shape[0])

    def ema_centres(self, out: Tensor | None = None) -> Tensor:
        """Codebook implied by the EMA state: sums / Laplace-smoothed counts, shape (K, D),
        written into `out` when given (the update writes it into the codebook)."""
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps).mul_(n / (n + self.codebook_size * self.eps))
        centres = torch.div(self.ema_sum, smoothed[:, None], out=out)
        if self.cosine:
            centres.copy_(F.normalize(centres, dim=-1))
        return centres

    @torch.no_grad()
    def _reset_dead_(self, rows: Callable[[Tensor], Tensor], num_rows: int, batch_rows: int) -> None:
        """Re-seed codes whose running usage fell below the threshold from rows(indices) -> (R, D)
        of this rank's num_rows prepared inputs; batch_rows counts the rows of all ranks."""
        dead = self.usage < self.dead_code_threshold  # identical on all ranks: usage is reduced
        num_dead = int(dead.sum().item())
        if num_dead == 0:
            return
        pick = torch.randint(num_rows, (num_dead,), device=self.usage.device)
        seeds = rows(pick).float()
        broadcast_(seeds)
        self.codebook.data[dead] = seeds
        # A re-seeded code gets the expected share of a batch, so it has time to win assignments.
        fresh = max(batch_rows / self.codebook_size, self.dead_code_threshold)
        self.usage[dead] = 2.0 * fresh
        if self.ema:
            self.ema_count[dead] = fresh
            self.ema_sum[dead] = seeds * fresh

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: Tensor, *, with_usage: bool = True) -> QuantizerOutput:
        """x (..., D) -> QuantizerOutput(quantized (..., D), codes (...,), loss (), usage (1,)).

        With `with_usage=False`, usage is None: a residual quantiser measures all layers at once.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"VectorQuantizer: expected x (..., {self.dim}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = self.prepare(x)
        wants_grad = torch.is_grad_enabled() and (flat.requires_grad or self.codebook.requires_grad)
        if self.gradient == "gumbel" and self.training:
            codes, quantized = self._gumbel_sample(flat)
            loss = self._loss(flat, quantized)
            result = quantized  # the gradient flows through the relaxed one-hot
        elif wants_grad:
            codes, _ = nearest_code(flat, self.codebook.detach(), self.block_elements)
            quantized = F.embedding(codes, self.codebook)
            loss = self._loss(flat, quantized)
            if self.gradient == "rotation":
                result = rotate_to(flat, quantized)
            else:
                result = flat + (quantized - flat).detach()
        else:
            codes, loss = self.assign(flat)
            result = F.embedding(codes, self.codebook)

        if self.training:
            self.update_(flat.detach(), codes)
        usage = None
        if with_usage:
            usage = batch_usage(codes, self.codebook_size, self.usage, self.dead_threshold)
        return QuantizerOutput(
            quantized=result.reshape(*lead, self.dim).to(x.dtype),
            codes=codes.reshape(lead),
            loss=loss,
            usage=usage,
        )

    def _gumbel_sample(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Hard Gumbel-softmax choice: (codes (N,), code vectors (N, D) carrying the relaxed
        one-hot's gradient)."""
        dist = squared_distances(flat, self.codebook)
        # Distances are measured in units of the batch's mean quantisation error, so the
        # temperature means the same whatever the latent's scale (raw -dist logits make the
        # sampling uniform noise when latents are small, and one-hot when they are large).
        unit = dist.detach().min(dim=1).values.mean().clamp_min(1e-8)
        soft = F.gumbel_softmax(-dist / unit, tau=float(self.temperature), hard=True)  # (N, K)
        return soft.argmax(dim=1), soft.to(self.codebook.dtype) @ self.codebook

    def _loss(self, flat: Tensor, quantized: Tensor) -> Tensor:
        """Commitment term, plus the codebook term when the codebook learns by gradient."""
        loss = self.commitment_weight * F.mse_loss(flat, quantized.detach())
        if not self.ema:
            loss = loss + F.mse_loss(quantized, flat.detach())
        return loss

    @property
    def dead_threshold(self) -> float:
        """Running usage below which a code counts as dead (the reset threshold, else ~never used)."""
        return self.dead_code_threshold if self.dead_code_threshold > 0 else 1e-3

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, ema={self.ema}, "
            f"kmeans_init={self.kmeans_init}, dead_code_threshold={self.dead_code_threshold}, "
            f"gradient={self.gradient!r}, cosine={self.cosine}"
        )


def same_settings(layers: Sequence[VectorQuantizer]) -> bool:
    """True when `layers` search, weigh their loss and update their state alike (all options but
    the gradient estimator and the Gumbel temperature): one `update_layers_` call serves them all."""
    keys = {
        (
            q.codebook_size,
            q.dim,
            q.commitment_weight,
            q.ema,
            q.decay,
            q.eps,
            q.usage_decay,
            q.dead_code_threshold,
            q.cosine,
            q.block_elements,
        )
        for q in layers
    }
    return len(keys) == 1


def squared_error(offsets: Tensor, flat: Tensor) -> Tensor:
    """sum |x - q|^2 () over a search's rows flat (N, D), from its offsets (N,) (`nearest_code`):
    sum(offsets) + sum |x|^2."""
    flat_1d = flat.reshape(-1)
    return offsets.sum() + torch.dot(flat_1d, flat_1d)


def search_loss(errors: Tensor, weight: float, numel: int) -> Tensor:
    """Loss value () from L searches' `squared_error`s, (L,) or (): the sum over layers of
    weight * mean |x - q|^2, each layer's error clamped at 0 (the offsets' rounding can make a
    perfect match slightly negative). Changes `errors`."""
    return errors.clamp_min_(0.0).sum().mul_(weight / max(numel, 1))


def update_layers_(
    layers: Sequence[VectorQuantizer],
    counts: Tensor,
    sums: Tensor | None,
    rows: Callable[[int, Tensor], Tensor],
    num_rows: int,
) -> None:
    """Training-mode state updates of L quantisers with the same settings (`same_settings`) from
    one batch: running usage, EMA sums and counts (and the codebooks they imply), dead-code reset;
    what each layer's own update would do, in one pass over all L. Call it without autograd.

    counts (L, K) float32: this rank's assignments per code; sums (L, K, D): per code, the sum of
    the prepared rows assigned to it (EMA layers, else None); both are summed over DDP ranks here,
    in place (one collective each for all layers). rows(l, indices) -> layer l's prepared input
    rows (R, D) at those indices of this rank's num_rows rows: the dead-code seeds.
    Why together: a small codebook's update is a handful of tiny ops, each costing more in
    dispatch than in arithmetic, and the foreach ops make them once for all layers.
    """
    first = layers[0]
    all_reduce_sum_(counts)
    per_layer = list(counts.unbind(0))
    # lerp_ is the EMA a * decay + b * (1 - decay) in one pass.
    torch._foreach_lerp_([q.usage for q in layers], per_layer, 1.0 - first.usage_decay)
    if first.ema:
        all_reduce_sum_(sums)
        torch._foreach_lerp_([q.ema_count for q in layers], per_layer, 1.0 - first.decay)
        torch._foreach_lerp_([q.ema_sum for q in layers], list(sums.unbind(0)), 1.0 - first.decay)
        for q in layers:  # each straight into its codebook: no stacked copies
            q.ema_centres(out=q.codebook.data)
    if first.dead_code_threshold > 0:
        batch_rows = int(counts[0].sum().item())
        for i, layer in enumerate(layers):
            layer._reset_dead_(lambda pick, i=i: rows(i, pick), num_rows, batch_rows)
