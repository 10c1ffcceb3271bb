"""BeT's action bins as a tokenizer: k-means centres of normalised action chunks, one code per chunk.

With it, VQBeTPolicy becomes BeT (Shafiullah et al. 2022): a bin classifier plus an offset conditioned
on the bin, on the same transformer. Fitted centres are buffers, so they are saved with the policy
(miniBET kept them outside the state dict and lost them on load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vqbet.quantize import kmeans, nearest_code
from vqbet.tokenizers.base import ChunkConfig, ChunkTokenizer, register_tokenizer


@dataclass
class KMeansTokenizerConfig(ChunkConfig):
    """Everything that defines a KMeansTokenizer (with ChunkConfig's fields); saved in its config.json."""

    chunk_size: int = 1
    """T: actions per chunk (BeT used single actions)."""
    num_bins: int = 64
    """K: k-means centres."""
    kmeans_iters: int = 50
    """Lloyd iterations of the fit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_bins < 2:
            raise ValueError(f"KMeansTokenizerConfig: num_bins must be >= 2, got {self.num_bins}")


@register_tokenizer("kmeans")
class KMeansTokenizer(ChunkTokenizer):
    """encode: (B, T, A) -> (B, 1) nearest bin; decode: (B, 1) -> (B, T, A) bin centre."""

    config_class = KMeansTokenizerConfig
    config: KMeansTokenizerConfig

    def __init__(self, config: KMeansTokenizerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        self.register_buffer("centres", torch.zeros(c.num_bins, c.chunk_size * c.action_dim))
        self.num_layers = 1
        self.codebook_size = c.num_bins

    @torch.no_grad()
    def _fit(self, chunks: Tensor, *, seed: int, **options: Any) -> dict[str, Any]:
        """The normaliser and the bins by k-means (`config.kmeans_iters` Lloyd iterations from seed
        `seed`); returns the mean squared error per normalised entry. `options` do not apply."""
        self.normalizer.fit(chunks)
        flat = self.normalizer.normalize(chunks).reshape(chunks.shape[0], -1)
        g = torch.Generator().manual_seed(seed)
        centres, counts = kmeans(flat, self.config.num_bins, iters=self.config.kmeans_iters, generator=g)
        self.centres.copy_(centres)
        _, offsets = nearest_code(flat, centres)
        mse = (offsets + flat.square().sum(1)).mean().item() / flat.shape[1]
        return {"reconstruction_loss": mse, "used_fraction/0": float((counts > 0).float().mean())}

    @torch.no_grad()
    def encode_normalized(self, chunks: Tensor) -> Tensor:
        return nearest_code(chunks.reshape(chunks.shape[0], -1), self.centres)[0][:, None]

    def decode_normalized(self, codes: Tensor) -> Tensor:
        c = self.config
        return self.centres[codes[:, 0]].view(-1, c.chunk_size, c.action_dim)
