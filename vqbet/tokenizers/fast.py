"""FAST (Pertsch et al. 2025) as a tokenizer family: a frequency-space action tokenizer.

Per chunk (T, A): each dimension is mapped to [-1, 1] by its robust quantiles (after the shared
normaliser), a DCT-II (orthonormal) runs over the T steps of every dimension, the coefficients are
scaled by `scale` and rounded to integers, flattened low frequencies first (frequency 0 of every
dimension, then frequency 1, ...), written as one symbol per integer, and byte-pair encoded with a
BPE vocabulary fitted on the user's chunks (Hugging Face `tokenizers`: `pip install "vqbet[fast]"`).

The token count varies per chunk: `encode` returns tokens padded with `pad_id` to
`tokens_per_chunk` (T * A, the most a chunk can take) and each chunk's length; `decode` takes both.
A sequence that does not spell exactly T * A coefficients (as a sampling policy may emit) never
raises: it decodes by the rule *missing high-frequency coefficients are zero, extra ones are
dropped*, and `decode_with_validity` says which rows needed that rule. Coefficients outside the
range seen in `fit` are clipped to it when encoding.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from vqbet.tokenizers.base import ChunkConfig, ChunkTokenizer, register_tokenizer
from vqbet.tokenizers.bins import check_quantiles, quantile_range

BPE_FILE = "bpe.json"
FIRST_SYMBOL = 0x100
"""Integer v is written as chr(FIRST_SYMBOL + v - lowest): printable, never whitespace."""


@dataclass
class FASTTokenizerConfig(ChunkConfig):
    """Everything that defines a FASTTokenizer (with ChunkConfig's fields)."""

    chunk_size: int = 10
    """T: actions per chunk (the DCT runs over these T steps)."""
    scale: float = 10.0
    """Coefficients are multiplied by this before rounding (FAST's default 10): larger is finer and
    longer."""
    vocab_size: int = 1024
    """BPE vocabulary (FAST's default 1024); at least the number of distinct coefficient values."""
    low_quantile: float = 0.01
    """Each dimension's [low_quantile, high_quantile] range maps to [-1, 1] before the DCT."""
    high_quantile: float = 0.99
    """... (the published recipe normalises by the 1st and 99th percentiles)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scale > 0:
            raise ValueError(f"FASTTokenizerConfig: scale must be > 0, got {self.scale}")
        if self.vocab_size < 2:
            raise ValueError(f"FASTTokenizerConfig: vocab_size must be >= 2, got {self.vocab_size}")
        check_quantiles(self)


def dct_matrix(n: int) -> Tensor:
    """The orthonormal DCT-II matrix (n, n): coefficients = D @ signal, signal = D.T @ coefficients."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos(math.pi / n * (t + 0.5) * k) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def _bpe_module() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            'the "fast" tokenizer needs Hugging Face tokenizers: pip install "vqbet[fast]"'
        ) from None
    return tokenizers


@register_tokenizer("fast")
class FASTTokenizer(ChunkTokenizer):
    """encode: (B, T, A) -> (tokens (B, T * A) padded with pad_id, lengths (B,));
    decode: (tokens, lengths) -> (B, T, A)."""

    config_class = FASTTokenizerConfig
    config: FASTTokenizerConfig
    variable_length: ClassVar[bool] = True

    def __init__(self, config: FASTTokenizerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        self.num_layers = c.chunk_size * c.action_dim
        self.register_buffer("low", torch.full((c.action_dim,), -1.0))
        self.register_buffer("high", torch.full((c.action_dim,), 1.0))
        self.register_buffer("dct", dct_matrix(c.chunk_size))
        self.register_buffer("int_range", torch.zeros(2, dtype=torch.int64))  # lowest, highest
        self._bpe: Any = None
        self._pieces: list[str] = []

    @property
    def codebook_size(self) -> int:
        """Values a token takes: the fitted BPE vocabulary (the configured size before `fit`)."""
        return len(self._pieces) if self._pieces else self.config.vocab_size

    @property
    def max_vocab_size(self) -> int:
        """The configured BPE vocabulary: the fitted one is at most this."""
        return self.config.vocab_size

    @property
    def pad_id(self) -> int:
        """What fills a row after its length (outside [0, vocab_size))."""
        return self.codebook_size

    # -- the coefficient integers --------------------------------------------------------------
    def _integers(self, chunks: Tensor) -> Tensor:
        """Normalised chunks (B, T, A) -> rounded scaled DCT coefficients (B, T * A), low first."""
        unit = 2 * (chunks - self.low) / (self.high - self.low) - 1
        coefficients = torch.einsum("kt,bta->bka", self.dct, unit)
        return torch.round(coefficients * self.config.scale).long().reshape(chunks.shape[0], -1)

    def _chunks(self, integers: Tensor) -> Tensor:
        """(B, T * A) integers -> normalised chunks (B, T, A)."""
        c = self.config
        coefficients = integers.reshape(-1, c.chunk_size, c.action_dim).to(self.dct) / c.scale
        unit = torch.einsum("kt,bka->bta", self.dct, coefficients)
        return (unit + 1) / 2 * (self.high - self.low) + self.low

    def _strings(self, integers: Tensor) -> list[str]:
        """(B, T * A) integers -> B strings of one symbol each, as numpy's UTF-32 rows (no loop)."""
        lowest, highest = (int(v) for v in self.int_range)
        symbols = (integers.clamp(lowest, highest) - lowest + FIRST_SYMBOL).cpu().numpy().astype("<u4")
        return np.ascontiguousarray(symbols).view(f"<U{symbols.shape[1]}").ravel().tolist()

    # -- fit --------------------------------------------------------------------------------------
    @torch.no_grad()
    def _fit(self, chunks: Tensor, *, seed: int, progress: bool = True, **options: Any) -> dict[str, Any]:
        """The normaliser, each dimension's quantile range, the coefficient range and the BPE
        vocabulary (`progress`: the trainer's bar); returns the mean squared error per normalised
        entry and the mean and largest token count. BPE training is deterministic (`seed` is
        unused); the other `options` do not apply."""
        tokenizers = _bpe_module()
        self.normalizer.fit(chunks)
        normalised = self.normalizer.normalize(chunks)
        low, high = quantile_range(normalised, self.config.low_quantile, self.config.high_quantile)
        self.low.copy_(low)
        self.high.copy_(high)
        integers = self._integers(normalised)
        self.int_range.copy_(torch.stack([integers.min(), integers.max()]))
        alphabet = [chr(FIRST_SYMBOL + i) for i in range(int(self.int_range[1] - self.int_range[0]) + 1)]
        if len(alphabet) > self.config.vocab_size:
            raise ValueError(
                f"FASTTokenizerConfig: vocab_size {self.config.vocab_size} is smaller than the "
                f"{len(alphabet)} distinct coefficient values at scale {self.config.scale}; raise "
                "vocab_size or lower scale"
            )
        bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=self.config.vocab_size,
            initial_alphabet=alphabet,
            show_progress=progress,
            max_token_length=self.num_layers,
        )
        bpe.train_from_iterator(self._strings(integers), trainer)
        self._set_bpe(bpe)
        tokens, lengths = self.encode(chunks)
        error = (self.normalizer.normalize(self.decode(tokens, lengths)) - normalised).square().mean()
        return {
            "reconstruction_loss": error.item(),
            "tokens_per_chunk_mean": lengths.float().mean().item(),
            "tokens_per_chunk_max": int(lengths.max()),
        }

    def _set_bpe(self, bpe: Any) -> None:
        self._bpe = bpe
        self._pieces = [bpe.id_to_token(i) for i in range(bpe.get_vocab_size())]

    def check_fitted(self) -> None:
        super().check_fitted()
        if self._bpe is None:
            raise ValueError("this 'fast' tokenizer has no BPE vocabulary: call fit(chunks) first")

    # -- encode / decode ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, actions: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """actions (B, T, A) raw -> (tokens (B, T * A) int64 padded with `pad_id`, lengths (B,))."""
        self.check_actions(actions)
        self.check_fitted()
        strings = self._strings(self._integers(self.normalizer.normalize(actions)))
        ids = [e.ids for e in self._bpe.encode_batch_fast(strings)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        tokens = np.full((len(ids), self.num_layers), self.pad_id, dtype=np.int64)
        # Row-major boolean indexing fills each row's first `length` places in order.
        tokens[np.arange(self.num_layers) < lengths[:, None]] = np.fromiter(
            itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum())
        )
        device = actions.device
        return torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device)

    def decode(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """(tokens (B, <= T * A), lengths (B,) or None: up to the first pad_id) -> actions (B, T, A)
        raw, by the rule of the module docstring for rows that do not spell T * A coefficients."""
        return self.decode_with_validity(tokens, lengths)[0]

    def decode_with_validity(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`decode`, and (B,) bool: which rows spelled exactly T * A coefficients."""
        self.check_fitted()
        if (
            not isinstance(tokens, Tensor)
            or tokens.dtype not in (torch.int64, torch.int32)
            or tokens.ndim != 2
        ):
            raise ValueError(
                f"tokens must be an int64 tensor (B, L), got {getattr(tokens, 'dtype', type(tokens))} "
                f"of shape {tuple(getattr(tokens, 'shape', ()))}"
            )
        rows = tokens.tolist()
        if lengths is None:
            counts = [row.index(self.pad_id) if self.pad_id in row else len(row) for row in rows]
        else:
            if lengths.shape != (tokens.shape[0],) or bool((lengths < 0).any()):
                raise ValueError(f"lengths must be ({tokens.shape[0]},) counts >= 0, got {lengths.tolist()}")
            counts = [min(int(n), len(row)) for n, row in zip(lengths.tolist(), rows, strict=True)]
        used = [row[:n] for row, n in zip(rows, counts, strict=True)]
        bad = [v for row in used for v in row if not 0 <= v < self.codebook_size]
        if bad:
            raise ValueError(
                f"tokens must lie in [0, {self.codebook_size}) before each row's length, got {bad[0]}"
            )
        lowest, width = int(self.int_range[0]), self.num_layers
        texts = ["".join(map(self._pieces.__getitem__, row)) for row in used]
        spelled = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        symbols = np.frombuffer("".join(texts).encode("utf-32-le"), dtype="<u4").astype(np.int64)
        starts = np.cumsum(spelled) - spelled
        # Each row's first min(spelled, T * A) symbols; the rest of the row stays 0 (the rule).
        kept = np.arange(width) < np.minimum(spelled, width)[:, None]
        integers = np.zeros((len(texts), width), dtype=np.int64)
        integers[kept] = symbols[(starts[:, None] + np.arange(width))[kept]] - FIRST_SYMBOL + lowest
        chunks = self._chunks(torch.from_numpy(integers).to(self.dct.device))
        return self.normalizer.unnormalize(chunks), torch.from_numpy(spelled == width).to(chunks.device)

    def encode_normalized(self, chunks: Tensor) -> Tensor:
        raise NotImplementedError("FAST's tokens vary in length: use encode (tokens, lengths)")

    def decode_normalized(self, codes: Tensor) -> Tensor:
        raise NotImplementedError("FAST's tokens vary in length: use decode (tokens, lengths)")

    @torch.no_grad()
    def round_trip_normalized(self, chunks: Tensor) -> Tensor:
        """`encode` then `decode` in normalised units, through the coefficient integers alone: BPE
        merges symbols losslessly, so only the rounding (and the clamp to the fitted range) counts."""
        self.check_fitted()
        lowest, highest = (int(v) for v in self.int_range)
        return self._chunks(self._integers(chunks).clamp(lowest, highest))

    # -- persistence ----------------------------------------------------------------------------
    def extra_files(self) -> dict[str, dict]:
        """The BPE vocabulary and merges, as Hugging Face tokenizers' JSON."""
        return {BPE_FILE: json.loads(self._bpe.to_str())} if self._bpe is not None else {}

    def load_extra_files(self, path: Path) -> None:
        file = Path(path) / BPE_FILE
        if bool(self.normalizer.fitted):
            if not file.is_file():
                raise FileNotFoundError(f"{file}: a fitted 'fast' tokenizer needs its BPE vocabulary")
            try:
                self._set_bpe(_bpe_module().Tokenizer.from_str(file.read_text()))
            except Exception as err:  # the Rust parser's own error types
                raise ValueError(f"{file}: not a tokenizers BPE file ({err})") from None
