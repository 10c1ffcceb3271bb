"""Per-dimension uniform bins (RT-2, OpenVLA): every action value of a chunk is one token, its bin
among `num_bins` uniform bins between robust quantiles of that action dimension.

A chunk (T, A) is T * A tokens, time-major (step 0's A values, then step 1's, ...), each in
[0, num_bins). Values outside the quantiles fall into the end bins (clipped); a token decodes to
its bin's centre, so encode(decode(tokens)) == tokens exactly and the error of a value inside the
range is at most half a bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vqbet.tokenizers.base import ChunkConfig, ChunkTokenizer, register_tokenizer


def quantile_range(chunks: Tensor, low_quantile: float, high_quantile: float) -> tuple[Tensor, Tensor]:
    """Per action dimension, the two quantiles of chunks (N, T, A): (low (A,), high (A,)); a constant
    dimension still gets a non-empty range, starting at its value."""
    flat = chunks.reshape(-1, chunks.shape[-1]).double()
    low, high = torch.quantile(flat, flat.new_tensor([low_quantile, high_quantile]), dim=0)
    high = torch.where(high - low < 1e-6, low + 1e-3, high)
    return low.to(chunks.dtype), high.to(chunks.dtype)


def check_quantiles(config: Any) -> None:
    """Raise ValueError unless 0 <= config.low_quantile < config.high_quantile <= 1."""
    if not 0.0 <= config.low_quantile < config.high_quantile <= 1.0:
        raise ValueError(
            f"{type(config).__name__}: need 0 <= low_quantile < high_quantile <= 1, got "
            f"{config.low_quantile}, {config.high_quantile}"
        )


@dataclass
class BinsTokenizerConfig(ChunkConfig):
    """Everything that defines a BinsTokenizer (with ChunkConfig's fields; T * A tokens a chunk)."""

    num_bins: int = 256
    """K: uniform bins per action dimension (RT-2 and OpenVLA use 256)."""
    low_quantile: float = 0.01
    """Each dimension's bins start at this quantile of its values (1st percentile, as OpenVLA)."""
    high_quantile: float = 0.99
    """... and end at this one."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_bins < 2:
            raise ValueError(f"BinsTokenizerConfig: num_bins must be >= 2, got {self.num_bins}")
        check_quantiles(self)


@register_tokenizer("bins")
class BinsTokenizer(ChunkTokenizer):
    """encode: (B, T, A) -> (B, T * A) bins; decode: (B, T * A) -> (B, T, A) bin centres."""

    config_class = BinsTokenizerConfig
    config: BinsTokenizerConfig

    def __init__(self, config: BinsTokenizerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        self.num_layers, self.codebook_size = c.chunk_size * c.action_dim, c.num_bins
        self.register_buffer("low", torch.full((c.action_dim,), -1.0))
        self.register_buffer("high", torch.full((c.action_dim,), 1.0))

    @torch.no_grad()
    def _fit(self, chunks: Tensor, *, seed: int, **options: Any) -> dict[str, Any]:
        """The normaliser and each dimension's range (its quantiles); returns the mean squared
        error per normalised entry and the share of bins used. Nothing is random (`seed` is
        unused); `options` do not apply."""
        self.normalizer.fit(chunks)
        target = self.normalizer.normalize(chunks)
        low, high = quantile_range(target, self.config.low_quantile, self.config.high_quantile)
        self.low.copy_(low)
        self.high.copy_(high)
        codes = self.encode_normalized(target)
        error = (self.decode_normalized(codes) - target).square().mean().item()
        used = torch.bincount(codes.flatten(), minlength=self.codebook_size).gt(0).float().mean().item()
        return {"reconstruction_loss": error, "used_fraction/0": used}

    def _width(self) -> Tensor:
        return (self.high - self.low) / self.config.num_bins  # (A,)

    @torch.no_grad()
    def encode_normalized(self, chunks: Tensor) -> Tensor:
        bins = torch.floor((chunks - self.low) / self._width())
        return bins.clamp_(0, self.config.num_bins - 1).long().reshape(chunks.shape[0], -1)

    def decode_normalized(self, codes: Tensor) -> Tensor:
        c = self.config
        bins = codes.reshape(-1, c.chunk_size, c.action_dim).to(self.low.dtype)
        return self.low + (bins + 0.5) * self._width()
