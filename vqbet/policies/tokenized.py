"""What every policy over an action tokenizer shares: the tokenizer built from a config dict
(`tokenizer.name` picks the registered family), checked against the policy's chunk, fitted in
phase 1 on the policy's chunks (in its action frame), frozen for phase 2, saved inside the policy's
checkpoint and rebuilt from it. VQ-BeT's code heads and the autoregressive token policy build on
it; so can a family of yours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from vqbet.data import TrajectoryWindows
from vqbet.policies.base import Policy, PolicyConfig
from vqbet.tokenizers import ChunkTokenizer, TokenizerFitConfig, tokenizer_class


@dataclass
class TransformerConfig(PolicyConfig):
    """The causal transformer over the observation window that token policies share."""

    n_layer: int = 4
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads per block."""
    n_embd: int = 128
    """Transformer width."""
    dropout: float = 0.1
    """Dropout in the transformer (active in training mode only)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        self.check_positive("n_layer", "n_head", "n_embd")
        if self.n_embd % self.n_head:
            raise ValueError(f"{name}: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {self.dropout}")


class TokenizedPolicy(Policy):
    """A Policy with a `tokenizer` (any registered `ChunkTokenizer` family) of its chunk size."""

    variable_length_ok: ClassVar[bool] = False
    """Whether the family takes tokenizers whose chunks take different token counts (FAST)."""

    def __init__(self, config: PolicyConfig, tokenizer: ChunkTokenizer) -> None:
        super().__init__(config)
        c = config
        tc = tokenizer.config
        if (tc.action_dim, tc.chunk_size) != (c.action_dim, c.action_chunk):
            raise ValueError(
                f"tokenizer encodes chunks of {tc.chunk_size} x {tc.action_dim} actions, but the policy "
                f"predicts {c.action_chunk} x {c.action_dim} (action_chunk x action_dim)"
            )
        if tokenizer.variable_length and not self.variable_length_ok:
            raise ValueError(
                f"the {self.name!r} policy predicts one token per position of a fixed-length sequence; "
                f"the {tokenizer.tokenizer_type!r} tokenizer's chunks take different token counts: use "
                "policy=ar (decodes tokens one at a time, with an end token)"
            )
        if bool(tokenizer.normalizer.fitted) and list(tc.relative_to) != c.action_relative_to:
            raise ValueError(
                f"the tokenizer was fitted on chunks relative to observation indices {tc.relative_to} "
                f"(empty: absolute), but the policy's action_relative_to is {c.action_relative_to}"
            )
        tc.relative_to = list(c.action_relative_to)  # an unfitted tokenizer takes the policy's frame
        self.tokenizer = tokenizer
        self.register_buffer("tokenizer_frozen", torch.tensor(False))

    @classmethod
    def build(cls, policy: dict[str, Any], tokenizer: dict[str, Any] | None = None) -> TokenizedPolicy:
        """From plain dicts: the policy's fields, and the tokenizer's: its registered `name`
        ("rvq" when absent) and its config fields (action_dim and chunk_size come from the policy)."""
        config = cls.config_class.from_dict(policy, f"policy config ({cls.name})")
        fields = dict(tokenizer or {})
        family = tokenizer_class(fields.pop("name", "rvq"))
        fields.update(action_dim=config.action_dim, chunk_size=config.action_chunk)
        return cls(config, family(family.config_class.from_dict(fields, "tokenizer config")))

    @classmethod
    def _from_meta(cls, config: PolicyConfig, meta: dict[str, Any], source: str) -> TokenizedPolicy:
        return cls(config, ChunkTokenizer.from_meta(meta, source))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), **self.tokenizer.meta()}

    def extra_files(self) -> dict[str, dict[str, Any]]:
        """The tokenizer's files that are not tensors (FAST's BPE vocabulary)."""
        return self.tokenizer.extra_files()

    def load_extra(self, path: str | os.PathLike) -> None:
        self.tokenizer.load_extra_files(Path(path))

    # -- phase 1 ---------------------------------------------------------------------------
    def fit_statistics(
        self,
        windows: TrajectoryWindows,
        *,
        seed: int = 0,
        tokenizer_fit: TokenizerFitConfig | None = None,
        log_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Observation normaliser, then the tokenizer (its own `fit`) on every action chunk of
        `windows` in the policy's frame."""
        super().fit_statistics(windows)
        chunks = self.chunks_in_frame(windows)
        return self.tokenizer.fit(chunks, seed=seed, config=tokenizer_fit, log_dir=log_dir, progress=progress)

    def freeze_statistics(self) -> None:
        """The tokenizer stops learning and stays in eval mode from now on."""
        self.tokenizer.requires_grad_(False)
        self.tokenizer.zero_grad(set_to_none=True)  # stale phase-1 gradients must not reach clipping
        self.tokenizer.eval()
        self.tokenizer_frozen.fill_(True)

    def train(self, mode: bool = True) -> TokenizedPolicy:
        super().train(mode)
        if bool(self.tokenizer_frozen):
            self.tokenizer.eval()
        return self
