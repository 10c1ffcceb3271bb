"""ActionTokenizer: action chunk (T, A) -> MLP encoder -> residual quantiser -> MLP decoder.

The tokenizer is a product of its own: it normalises raw actions itself (statistics in buffers),
encodes chunks to L integer codes, decodes codes to raw actions, and saves to / loads from a folder
of `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vqbet.nn.mlp import mlp
from vqbet.quantize import CodebookUsage, Residual, ResidualFSQ, ResidualVQ
from vqbet.tokenizers.base import ChunkConfig, ChunkTokenizer, register_tokenizer
from vqbet.tokenizers.fit import TokenizerFitConfig, fit_tokenizer


@dataclass
class TokenizerConfig(ChunkConfig):
    """Everything that defines an ActionTokenizer (with ChunkConfig's action_dim, chunk_size,
    normalization, relative_to); saved in its config.json."""

    num_layers: int = 2
    """L: residual quantiser layers (codes per chunk)."""
    codebook_size: int = 16
    """K: codes per layer (for "rvq")."""
    quantizer: Literal["rvq", "fsq"] = "rvq"
    """"rvq" (learned codebooks) or "fsq" (fixed grid of `fsq_levels`)."""
    fsq_levels: list[int] = field(default_factory=lambda: [5, 5, 5])
    """Grid sizes per latent dimension for "fsq" (codes per layer = their product)."""
    latent_dim: int = 64
    """Size of the encoder's output, the quantised vector."""
    hidden_dim: int = 128
    """Width of the encoder and decoder MLPs."""
    depth: int = 2
    """Hidden layers in the encoder and in the decoder."""
    reconstruction_loss: Literal["mse", "l1"] = "mse"
    """"mse" or "l1" (VQ-BeT uses L1) between normalised chunks and reconstructions."""
    commitment_weight: float = 0.25
    """beta of the commitment loss, per layer."""
    ema: bool = True
    """Learn codebooks by exponential moving averages instead of gradients."""
    decay: float = 0.9
    """EMA decay of the codebooks."""
    kmeans_init: bool = True
    """Initialise each codebook by k-means on the first training batch."""
    dead_code_threshold: float = 1.0
    """Re-seed codes used less than this many times per batch (running average); 0 = never."""
    gradient: Literal["ste", "rotation", "gumbel"] = "ste"
    """Gradient estimator through the quantiser: "ste", "rotation" or "gumbel"."""
    cosine: bool = False
    """Cosine-similarity codebooks (directions only)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers", "latent_dim", "hidden_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TokenizerConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"TokenizerConfig: depth must be >= 0, got {self.depth}")
        if self.quantizer == "rvq" and self.codebook_size < 2:
            raise ValueError(f"TokenizerConfig: codebook_size must be >= 2, got {self.codebook_size}")
        self.fsq_levels = [int(v) for v in self.fsq_levels]


@dataclass
class TokenizerOutput:
    """What ActionTokenizer.forward returns."""

    reconstruction: Tensor
    """(B, T, A) decoded chunk, in raw action units."""
    codes: Tensor
    """(B, L) int64 codes."""
    loss: Tensor
    """() reconstruction + quantiser loss: what the fitting loop minimises."""
    reconstruction_loss: Tensor
    """() reconstruction error on normalised actions."""
    quantizer_loss: Tensor
    """() codebook + commitment terms."""
    usage: CodebookUsage
    """Per-layer perplexity, used fraction and dead codes, each (L,)."""


@register_tokenizer("rvq")
class ActionTokenizer(ChunkTokenizer):
    """Residual-VQ (or FSQ) autoencoder of action chunks.

    `ActionTokenizer(action_dim=2, chunk_size=5, num_layers=2, codebook_size=16)` or
    `ActionTokenizer(config)`. encode: (B, T, A) -> (B, L); decode: (B, L) -> (B, T, A).
    """

    config_class = TokenizerConfig
    config: TokenizerConfig

    def __init__(self, config: TokenizerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        flat = c.chunk_size * c.action_dim
        self.encoder = mlp(flat, c.hidden_dim, c.latent_dim, c.depth)
        self.decoder = mlp(c.latent_dim, c.hidden_dim, flat, c.depth)
        if c.quantizer == "rvq":
            self.quantizer: Residual = ResidualVQ(
                dim=c.latent_dim,
                codebook_size=c.codebook_size,
                num_layers=c.num_layers,
                commitment_weight=c.commitment_weight,
                ema=c.ema,
                decay=c.decay,
                kmeans_init=c.kmeans_init,
                dead_code_threshold=c.dead_code_threshold,
                gradient=c.gradient,
                cosine=c.cosine,
            )
        else:
            self.quantizer = ResidualFSQ(levels=c.fsq_levels, num_layers=c.num_layers, dim=c.latent_dim)

    # -- shapes ----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.quantizer.num_layers

    @property
    def codebook_size(self) -> int:
        """Codes per layer (K for RVQ, prod(levels) for FSQ)."""
        return self.quantizer.codebook_size

    def _fit(
        self,
        chunks: Tensor,
        *,
        seed: int,
        config: TokenizerFitConfig | None = None,
        log_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """`fit_tokenizer` with `config` at `seed`; the last logged metrics plus the `history`."""
        fit = dataclasses.replace(config or TokenizerFitConfig(), seed=seed)
        history = fit_tokenizer(self, chunks, fit, log_dir=log_dir, progress=progress)
        return {**history[-1], "history": history}

    # -- model -----------------------------------------------------------------------------
    def _actions(self, latent: Tensor) -> Tensor:
        """Quantised latent (B, latent_dim) -> normalised chunk (B, T, A)."""
        c = self.config
        return self.decoder(latent).reshape(-1, c.chunk_size, c.action_dim)

    def forward(self, actions: Tensor) -> TokenizerOutput:
        """actions (B, T, A) raw -> TokenizerOutput (reconstruction in raw units)."""
        self.check_actions(actions)
        target = self.normalizer.normalize(actions)
        out = self.quantizer(self.encoder(target.reshape(target.shape[0], -1)))
        recon = self._actions(out.quantized)
        if self.config.reconstruction_loss == "l1":
            recon_loss = F.l1_loss(recon, target)
        else:
            recon_loss = F.mse_loss(recon, target)
        return TokenizerOutput(
            reconstruction=self.normalizer.unnormalize(recon),
            codes=out.codes,
            loss=recon_loss + out.loss,
            reconstruction_loss=recon_loss,
            quantizer_loss=out.loss,
            usage=out.usage,
        )

    @torch.no_grad()
    def encode_normalized(self, chunks: Tensor) -> Tensor:
        return self.quantizer.encode(self.encoder(chunks.reshape(chunks.shape[0], -1)))

    def decode_normalized(self, codes: Tensor) -> Tensor:
        """Differentiable in the decoder."""
        return self._actions(self.quantizer.decode(codes))
