"""BeT (Shafiullah et al. 2022): VQ-BeT's transformer and offset head over k-means bins of action
chunks (one code per chunk) instead of residual codes."""

from __future__ import annotations

from dataclasses import dataclass

from vqbet.policies.registry import register_policy
from vqbet.policies.vqbet import VQBeTConfig, VQBeTPolicy
from vqbet.tokenizers import ChunkTokenizer
from vqbet.tokenizers.kmeans import KMeansTokenizer, KMeansTokenizerConfig


@dataclass
class BeTConfig(VQBeTConfig):
    """A VQBeTConfig plus the bins."""

    num_bins: int = 64
    """K: k-means centres of normalised action chunks."""
    kmeans_iters: int = 50
    """Lloyd iterations of the bin fit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("kmeans_iters")


@register_policy("bet")
class BeTPolicy(VQBeTPolicy):
    """VQBeTPolicy whose tokenizer is a KMeansTokenizer built from the config."""

    config_class = BeTConfig
    config: BeTConfig

    def __init__(self, config: BeTConfig, tokenizer: ChunkTokenizer | None = None) -> None:
        if tokenizer is None:
            tokenizer = KMeansTokenizer(
                KMeansTokenizerConfig(
                    action_dim=config.action_dim,
                    chunk_size=config.action_chunk,
                    num_bins=config.num_bins,
                    kmeans_iters=config.kmeans_iters,
                )
            )
        super().__init__(config, tokenizer)

    @classmethod
    def build(cls, policy: dict, tokenizer: dict | None = None) -> BeTPolicy:
        """The bins come from the policy config; a tokenizer config does not apply."""
        return cls(cls.config_class.from_dict(policy, f"policy config ({cls.name})"))
