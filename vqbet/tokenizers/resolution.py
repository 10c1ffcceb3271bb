"""How finely a discretiser resolves a dataset's action chunks: the share of the chunks' variance
that its codes leave for the offset head, on held-out episodes.

Both BeT and VQ-BeT predict a code and then a continuous offset; the code's job is to name the
mode, the offset's to correct within it. Where the codes leave little variance, a classifier over
them carries the multimodality and the offset a small unimodal correction; where they leave much,
the offset must carry it and regresses towards a mean. This compares k-means bins ("bins64": BeT)
and residual codes ("rvq16x2": VQ-BeT's K x L) at a chunk length, all in the same normalised units.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from vqbet.tokenizers.fit import TokenizerFitConfig, fit_tokenizer
from vqbet.tokenizers.kmeans import KMeansTokenizer, KMeansTokenizerConfig
from vqbet.tokenizers.rvq import ActionTokenizer, ChunkTokenizer, TokenizerConfig

_SPEC = re.compile(r"^(?:bins(?P<bins>\d+)|rvq(?P<k>\d+)x(?P<l>\d+))$")


@dataclass(frozen=True)
class Discretiser:
    """k-means bins (`num_layers` 1) or an RVQ ActionTokenizer with `num_layers` codebooks of
    `codebook_size` codes."""

    kind: str
    codebook_size: int
    num_layers: int = 1

    @classmethod
    def parse(cls, spec: str) -> Discretiser:
        """ "bins64" -> 64 k-means bins; "rvq16x2" -> 2 residual codebooks of 16 codes."""
        match = _SPEC.match(spec.strip())
        if match is None:
            raise ValueError(f"discretiser {spec!r}: expected binsK (e.g. bins64) or rvqKxL (e.g. rvq16x2)")
        if match["bins"] is not None:
            out = cls("bins", int(match["bins"]))
        else:
            out = cls("rvq", int(match["k"]), int(match["l"]))
        if out.codebook_size < 2 or out.num_layers < 1:
            raise ValueError(f"discretiser {spec!r}: needs at least 2 codes and 1 layer")
        return out

    @property
    def name(self) -> str:
        return (
            f"bins{self.codebook_size}"
            if self.kind == "bins"
            else f"rvq{self.codebook_size}x{self.num_layers}"
        )

    @property
    def bits(self) -> float:
        """log2 of the distinct codes it can give a chunk (K for bins, K^L for RVQ)."""
        return self.num_layers * math.log2(self.codebook_size)


def make_tokenizer(
    d: Discretiser, action_dim: int, chunk_size: int, rvq: dict | None = None
) -> ChunkTokenizer:
    """An unfitted tokenizer for `d`; `rvq` overrides TokenizerConfig fields (e.g. hidden_dim)."""
    if d.kind == "bins":
        return KMeansTokenizer(
            KMeansTokenizerConfig(action_dim=action_dim, chunk_size=chunk_size, num_bins=d.codebook_size)
        )
    config = TokenizerConfig(
        **{
            **(rvq or {}),
            "action_dim": action_dim,
            "chunk_size": chunk_size,
            "codebook_size": d.codebook_size,
            "num_layers": d.num_layers,
        }
    )
    return ActionTokenizer(config)


@torch.no_grad()
def held_out_residual(tokenizer: ChunkTokenizer, chunks: Tensor, batch: int = 8192) -> dict[str, float]:
    """On chunks (N, T, A) raw: the mean squared error of decode(encode(x)) in the tokenizer's
    normalised units (per element; with mean-std normalisation, the share of variance left) and
    the share of codes of each layer used."""
    tokenizer.eval()
    sq, used = 0.0, torch.zeros(tokenizer.num_layers, tokenizer.codebook_size, dtype=torch.bool)
    for start in range(0, chunks.shape[0], batch):
        x = tokenizer.normalizer.normalize(chunks[start : start + batch])
        codes = tokenizer.encode_normalized(x)
        sq += (tokenizer.decode_normalized(codes) - x).square().sum().item()
        seen = torch.stack([torch.bincount(c, minlength=tokenizer.codebook_size) > 0 for c in codes.T])
        used |= seen
    return {"residual": sq / chunks.numel(), "used": used.float().mean().item()}


def resolution(
    d: Discretiser,
    train: Tensor,
    held_out: Tensor,
    *,
    fit: TokenizerFitConfig | None = None,
    rvq: dict | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Fit `d` on `train` chunks (N, T, A) raw and measure it on `held_out` (M, T, A): residual
    (share of variance left), used (share of codes used), bits."""
    if train.ndim != 3 or held_out.shape[1:] != train.shape[1:] or min(len(train), len(held_out)) < 2:
        raise ValueError(
            f"chunks must be (N, T, A) alike with N >= 2, got {tuple(train.shape)} and "
            f"{tuple(held_out.shape)}"
        )
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(d, train.shape[2], train.shape[1], rvq)
    if isinstance(tokenizer, KMeansTokenizer):
        tokenizer.fit(train, seed=seed)
    else:
        fit_tokenizer(
            tokenizer, train, dataclasses.replace(fit or TokenizerFitConfig(), seed=seed), progress=False
        )
    return {**held_out_residual(tokenizer, held_out), "bits": d.bits}
