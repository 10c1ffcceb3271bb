"""Finite scalar quantisation as a tokenizer family (Mentzer et al. 2023; QueST's action tokens):
the ActionTokenizer's encoder and decoder around a fixed grid instead of learned codebooks, so there
is nothing to collapse. One layer is FSQ (one token per chunk, prod(fsq_levels) values); more
layers are residual FSQ, each quantising what the layers before it left."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vqbet.tokenizers.base import register_tokenizer
from vqbet.tokenizers.rvq import ActionTokenizer, TokenizerConfig


@dataclass
class FSQTokenizerConfig(TokenizerConfig):
    """A TokenizerConfig whose quantiser is FSQ; the codebook fields (codebook_size, ema, decay,
    kmeans_init, dead_code_threshold, gradient, cosine) do not apply."""

    num_layers: int = 1
    """L: FSQ layers (1: FSQ; more: residual FSQ)."""
    quantizer: Literal["fsq"] = "fsq"
    """Always "fsq" in this family."""
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    """Grid sizes per latent dimension (values per token = their product; [8, 5, 5, 5]: 1,000)."""


@register_tokenizer("fsq")
class FSQTokenizer(ActionTokenizer):
    """encode: (B, T, A) -> (B, L) grid cells; decode: (B, L) -> (B, T, A)."""

    config_class = FSQTokenizerConfig
    config: FSQTokenizerConfig
