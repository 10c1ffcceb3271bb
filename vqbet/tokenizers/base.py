"""The chunk tokenizer interface and its registry.

A tokenizer maps action chunks (B, T, A) in raw units to integer tokens (B, L) and back. It
normalises its own input (statistics in buffers) and records the frame its chunks live in
(`config.relative_to`), so a tokenizer saved on its own says what its tokens mean. Every family
fits, encodes, decodes, saves and loads the same way; policies use only this interface.

A new family is one module: a `ChunkTokenizer` subclass with `@register_tokenizer("name")`, its
config (`config_class`, a `ChunkConfig` subclass) and `_fit` (on checked chunks),
`encode_normalized`, `decode_normalized`. `tokenizer_class("name")` imports
`vqbet.tokenizers.<name>` on first use, as `policy_class` does for policies.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from vqbet.checks import check_literals, config_from_dict
from vqbet.io.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_state_strict,
    read_json,
    read_tensors,
    write_folder,
)
from vqbet.nn.normalize import Normalizer
from vqbet.registry import Registry

MODEL_TYPE = "vqbet.tokenizer"
FORMAT_VERSION = 1

_REGISTRY: Registry[type[ChunkTokenizer]] = Registry("tokenizer", "tokenizer_type", "vqbet.tokenizers")
TOKENIZERS: dict[str, type[ChunkTokenizer]] = _REGISTRY.classes
"""Registered tokenizer families by name (what configs and checkpoints call `tokenizer_type`)."""


def register_tokenizer(name: str) -> Callable[[type[ChunkTokenizer]], type[ChunkTokenizer]]:
    """Class decorator: register a ChunkTokenizer subclass as family `name` (sets `tokenizer_type`)."""
    return _REGISTRY.register(name)


def tokenizer_class(name: str) -> type[ChunkTokenizer]:
    """The class of tokenizer family `name`; imports `vqbet.tokenizers.<name>` if not registered yet."""
    return _REGISTRY.get(name)


@dataclass
class ChunkConfig:
    """The fields every tokenizer's config has: the chunk's shape, its normalisation and frame.
    A family's config subclasses it (and calls `super().__post_init__()` from its own)."""

    action_dim: int = 2
    """A: size of one action."""
    chunk_size: int = 5
    """T: actions per chunk."""
    normalization: Literal["meanstd", "minmax"] = "meanstd"
    """How raw actions are normalised before tokenizing: "meanstd" or "minmax"."""
    relative_to: list[int] = field(default_factory=list)
    """The frame the chunks live in: empty for absolute actions, else for each action dim the
    observation index subtracted from it (a policy's `action_relative_to`). Recorded so that a
    tokenizer loaded on its own says what its tokens mean; set by the policy that fits it."""

    def __post_init__(self) -> None:
        check_literals(self)
        self.relative_to = [int(i) for i in self.relative_to]
        for name in ("action_dim", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> Any:
        """Build from a dict, naming unknown keys instead of failing with a TypeError."""
        return config_from_dict(cls, data, source)


def as_chunks(chunks: Tensor | np.ndarray) -> Tensor:
    """Chunks as given (tensor or array) -> a float32 tensor (N, T, A) (shape checked by the caller)."""
    data = chunks if isinstance(chunks, Tensor) else torch.as_tensor(np.asarray(chunks))
    return data.to(torch.float32)


class ChunkTokenizer(nn.Module):
    """Action chunks (B, T, A) <-> tokens (B, L) int64 in [0, codebook_size).

    What a policy uses: `config` (with `chunk_size`, `action_dim`, `relative_to`), `num_layers`
    (L, tokens per chunk), `codebook_size` (K, values per token), a `normalizer`, `fit`, and
    tokens to and from *normalised* chunks (`encode_normalized`, `decode_normalized`): a policy
    normalises a chunk once and stays in that space until it returns raw actions. `encode` and
    `decode` are the raw-unit views for users; the input checks they share live here.
    """

    tokenizer_type: ClassVar[str]
    """Name of this family in the registry, configs and checkpoints ("rvq", "kmeans")."""
    variable_length: ClassVar[bool] = False
    """True where chunks take different token counts (FAST): `encode` then returns (tokens padded
    to `tokens_per_chunk`, lengths) and `decode` takes both; policies with one code head per token
    position take fixed-length families only."""
    config_class: ClassVar[type]
    """The family's config dataclass."""
    config: Any
    normalizer: Normalizer
    num_layers: int
    codebook_size: int

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        """`Family(config)`, `Family(**config_fields)`, or `Family(config, **fields_to_replace)`."""
        super().__init__()
        if config is None:
            config = self.config_class(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.normalizer = Normalizer(config.action_dim, mode=config.normalization)

    @property
    def tokens_per_chunk(self) -> int:
        """L: tokens one chunk encodes to."""
        return self.num_layers

    @property
    def vocab_size(self) -> int:
        """K: values each token takes, [0, K)."""
        return self.codebook_size

    @property
    def max_vocab_size(self) -> int:
        """The most values a token can take, fixed by the config alone (before `fit` too): what a
        policy sizes its token embedding by."""
        return self.vocab_size

    # -- the family's part -------------------------------------------------------------------
    def fit(
        self,
        chunks: Tensor | np.ndarray,
        *,
        seed: int = 0,
        config: Any = None,
        log_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Fit the normaliser and the tokens on chunks (N, T, A) in raw units; returns the final
        metrics (`reconstruction_loss`, `used_fraction/<l>`, and `history` for families trained by
        gradient steps). `config` says how to train where a family has such a loop
        (ActionTokenizer: a TokenizerFitConfig); families fitted in closed form ignore it, as they
        ignore `log_dir` (tensorboard curves) and `progress` (a progress bar)."""
        data = as_chunks(chunks)
        self.check_actions(data, name="chunks")
        return self._fit(data, seed=seed, config=config, log_dir=log_dir, progress=progress)

    def _fit(self, chunks: Tensor, *, seed: int, **options: Any) -> dict[str, Any]:
        """The family's `fit` on checked float32 chunks (N, T, A) in raw units; `options` are
        `fit`'s config, log_dir and progress, each a family's to use or ignore."""
        raise NotImplementedError

    def encode_normalized(self, chunks: Tensor) -> Tensor:
        """Normalised chunks (B, T, A) -> tokens (B, L) int64; never changes state."""
        raise NotImplementedError

    def decode_normalized(self, codes: Tensor) -> Tensor:
        """Tokens (B, L) -> normalised chunks (B, T, A)."""
        raise NotImplementedError

    @torch.no_grad()
    def round_trip_normalized(self, chunks: Tensor) -> Tensor:
        """Normalised chunks (B, T, A) -> the normalised chunks their tokens decode to (B, T, A):
        what a policy's continuous offset corrects."""
        return self.decode_normalized(self.encode_normalized(chunks))

    # -- raw units -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, actions: Tensor) -> Tensor:
        """actions (B, T, A) raw -> tokens (B, L) int64. Never changes state, in either mode."""
        self.check_actions(actions)
        self.check_fitted()
        return self.encode_normalized(self.normalizer.normalize(actions))

    def decode(self, codes: Tensor) -> Tensor:
        """tokens (B, L) int64 -> actions (B, T, A) raw."""
        self.check_codes(codes)
        self.check_fitted()
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

    def check_fitted(self) -> None:
        """Raise ValueError unless the tokenizer was fitted (its normaliser holds statistics)."""
        if not bool(self.normalizer.fitted):
            raise ValueError(
                f"this {self.tokenizer_type!r} tokenizer is not fitted: call fit(chunks) first, or load a "
                "fitted one (load_tokenizer)"
            )

    def check_codes(self, codes: Tensor) -> None:
        """Raise ValueError unless `codes` is an integer tensor (B, L) with values in [0, K)."""
        if not isinstance(codes, Tensor) or codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"codes must be an int64 tensor, got {getattr(codes, 'dtype', type(codes))}")
        if codes.ndim != 2 or codes.shape[1] != self.num_layers:
            raise ValueError(f"codes must have shape (B, {self.num_layers}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values outside it")

    # -- persistence ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """What identifies this tokenizer in a config.json: its family and its config."""
        return {"tokenizer_type": self.tokenizer_type, "tokenizer": dataclasses.asdict(self.config)}

    @staticmethod
    def from_meta(meta: dict[str, Any], source: str) -> ChunkTokenizer:
        """An unfitted tokenizer of the family and config `meta` (from `meta()`) names."""
        kind, fields = meta.get("tokenizer_type"), meta.get("tokenizer")
        if not isinstance(kind, str) or not isinstance(fields, dict):
            raise ValueError(f"{source}: needs a 'tokenizer_type' name and a 'tokenizer' object")
        try:
            cls = tokenizer_class(kind)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        return cls(cls.config_class.from_dict(fields, source))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write `config.json` + `model.safetensors` to folder `path`, atomically."""
        meta = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **self.meta()}
        return write_folder(
            path,
            json_files={CONFIG_FILE: meta, **self.extra_files()},
            tensor_files={WEIGHTS_FILE: self.state_dict()},
        )

    def extra_files(self) -> dict[str, dict]:
        """JSON files a family saves beside its weights (file name -> content); none by default."""
        return {}

    def load_extra_files(self, path: Path) -> None:
        """Read what `extra_files` wrote, after the weights are loaded."""

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> ChunkTokenizer:
        """Load a tokenizer saved by `save_pretrained` (JSON and safetensors only: nothing in the
        folder is executed). On `ChunkTokenizer` it loads any family; on a family, only that one."""
        meta = read_json(path)
        source = str(Path(path) / CONFIG_FILE)
        if meta.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{source}: model_type is {meta.get('model_type')!r}, expected {MODEL_TYPE!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: format_version {meta.get('format_version')!r} is not supported "
                f"(this vqbet reads {FORMAT_VERSION})"
            )
        tokenizer = cls.from_meta(meta, source)
        if not isinstance(tokenizer, cls):
            raise ValueError(
                f"{source}: holds a {tokenizer.tokenizer_type!r} tokenizer, not a {cls.__name__}; "
                "vqbet.load_tokenizer loads any family"
            )
        load_state_strict(tokenizer, read_tensors(path), str(Path(path) / WEIGHTS_FILE))
        tokenizer.load_extra_files(Path(path))
        return tokenizer.to(map_location).eval()


def load_tokenizer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ChunkTokenizer:
    """Any registered tokenizer saved by `save_pretrained`, by the family its config.json names."""
    return ChunkTokenizer.from_pretrained(path, map_location)
