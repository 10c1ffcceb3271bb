"""ActionTokenizer: action chunk (T, A) -> MLP encoder -> residual quantiser -> MLP decoder.

The tokenizer is a product of its own: it normalises raw actions itself (statistics in buffers),
encodes chunks to L integer codes, decodes codes to raw actions, and saves to / loads from a folder
of `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_state_strict,
    read_json,
    read_tensors,
    write_folder,
)
from vqbet.config import check_literals, config_from_dict
from vqbet.normalize import Normalizer
from vqbet.quantize import CodebookUsage, Residual, ResidualFSQ, ResidualVQ

MODEL_TYPE = "vqbet.ActionTokenizer"
FORMAT_VERSION = 1


@dataclass
class TokenizerConfig:
    """Everything that defines an ActionTokenizer; saved as its config.json."""

    action_dim: int = 2
    """A: size of one action."""
    chunk_size: int = 5
    """T: actions per chunk (one token = one chunk)."""
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
    normalization: Literal["meanstd", "minmax"] = "meanstd"
    """How raw actions are normalised before encoding: "meanstd" or "minmax"."""
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
    relative_to: list[int] = field(default_factory=list)
    """The frame the chunks live in: empty for absolute actions, else for each action dim the
    observation index subtracted from it (a policy's `action_relative_to`). Recorded so that a
    tokenizer loaded on its own says what its codes mean; set by the policy that fits it."""

    def __post_init__(self) -> None:
        check_literals(self)
        self.relative_to = [int(i) for i in self.relative_to]
        for name in ("action_dim", "chunk_size", "num_layers", "latent_dim", "hidden_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TokenizerConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"TokenizerConfig: depth must be >= 0, got {self.depth}")
        if self.quantizer == "rvq" and self.codebook_size < 2:
            raise ValueError(f"TokenizerConfig: codebook_size must be >= 2, got {self.codebook_size}")
        self.fsq_levels = [int(v) for v in self.fsq_levels]

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TokenizerConfig:
        """Build from a dict, naming unknown keys instead of failing with a TypeError."""
        return config_from_dict(cls, data, source)


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


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int) -> nn.Sequential:
    """`depth` hidden layers of width `hidden` with GELU, then a linear output."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class ChunkTokenizer(nn.Module):
    """What a policy needs of a tokenizer: `config` (with `chunk_size`, `action_dim`,
    `relative_to`), `num_layers`, `codebook_size`, a `normalizer`, and codes to and from
    *normalised* chunks (`encode_normalized`, `decode_normalized`): a policy normalises a chunk
    once and stays in that space until it returns raw actions. `encode`/`decode` are the raw-unit
    views for users; the input checks they share live here."""

    tokenizer_type: ClassVar[str]
    """Key of this class in checkpoints ("rvq", "kmeans")."""
    config: Any
    normalizer: Normalizer
    num_layers: int
    codebook_size: int

    def encode_normalized(self, chunks: Tensor) -> Tensor:
        """Normalised chunks (B, T, A) -> codes (B, L) int64; never changes state."""
        raise NotImplementedError

    def decode_normalized(self, codes: Tensor) -> Tensor:
        """Codes (B, L) -> normalised chunks (B, T, A)."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, actions: Tensor) -> Tensor:
        """actions (B, T, A) raw -> codes (B, L) int64. Never changes state, in either mode."""
        self.check_actions(actions)
        return self.encode_normalized(self.normalizer.normalize(actions))

    def decode(self, codes: Tensor) -> Tensor:
        """codes (B, L) int64 -> actions (B, T, A) raw."""
        self.check_codes(codes)
        return self.normalizer.unnormalize(self.decode_normalized(codes))

    def check_actions(self, actions: Tensor, name: str = "actions") -> None:
        """Raise ValueError unless `actions` is a finite float tensor of shape (B, T, A)."""
        c = self.config
        if not isinstance(actions, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(actions).__name__}")
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (c.chunk_size, c.action_dim):
            raise ValueError(
                f"{name} must have shape (B, {c.chunk_size}, {c.action_dim}) "
                f"(batch, chunk_size, action_dim), got {tuple(actions.shape)}"
            )
        if not actions.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {actions.dtype}")
        if not bool(torch.isfinite(actions).all()):
            raise ValueError(f"{name} contains NaN or inf")

    def check_codes(self, codes: Tensor) -> None:
        """Raise ValueError unless `codes` is an integer tensor (B, L) with values in [0, K)."""
        if not isinstance(codes, Tensor) or codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"codes must be an int64 tensor, got {getattr(codes, 'dtype', type(codes))}")
        if codes.ndim != 2 or codes.shape[1] != self.num_layers:
            raise ValueError(f"codes must have shape (B, {self.num_layers}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values outside it")


class ActionTokenizer(ChunkTokenizer):
    """Residual-VQ (or FSQ) autoencoder of action chunks.

    `ActionTokenizer(action_dim=2, chunk_size=5, num_layers=2, codebook_size=16)` or
    `ActionTokenizer(config)`. encode: (B, T, A) -> (B, L); decode: (B, L) -> (B, T, A).
    """

    tokenizer_type = "rvq"

    def __init__(self, config: TokenizerConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = TokenizerConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        c = config
        flat = c.chunk_size * c.action_dim
        self.normalizer = Normalizer(c.action_dim, mode=c.normalization)
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

    # -- persistence -----------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write `config.json` + `model.safetensors` to folder `path`, atomically."""
        meta = {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
        }
        return write_folder(
            path, json_files={CONFIG_FILE: meta}, tensor_files={WEIGHTS_FILE: self.state_dict()}
        )

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> ActionTokenizer:
        """Load a tokenizer saved by `save_pretrained`. Reads JSON and safetensors only."""
        meta = read_json(path)
        source = str(Path(path) / CONFIG_FILE)
        if meta.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{source}: model_type is {meta.get('model_type')!r}, expected {MODEL_TYPE!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: format_version {meta.get('format_version')!r} is not supported "
                f"(this vqbet reads {FORMAT_VERSION})"
            )
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"{source}: key 'config' is missing or not an object")
        tokenizer = cls(TokenizerConfig.from_dict(meta["config"], source))
        load_state_strict(tokenizer, read_tensors(path), str(Path(path) / WEIGHTS_FILE))
        return tokenizer.to(map_location).eval()
