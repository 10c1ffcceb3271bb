"""vqbet: action tokenizers (residual VQ and more, behind one interface) and the VQ-BeT behaviour
policy, with MuJoCo tasks, datasets, training and evaluation around them.

    from vqbet import ActionTokenizer, load_tokenizer, load_policy, load_dataset
"""

from vqbet.data import EpisodeData, TrajectoryWindows, load_dataset
from vqbet.nn.normalize import Normalizer
from vqbet.policies import (
    Policy,
    PolicyConfig,
    VQBeTConfig,
    VQBeTPolicy,
    load_policy,
    policy_class,
    register_policy,
)
from vqbet.tokenizers import (
    TOKENIZERS,
    ActionTokenizer,
    ChunkTokenizer,
    KMeansTokenizer,
    TokenizerConfig,
    TokenizerFitConfig,
    TokenizerOutput,
    fit_tokenizer,
    load_tokenizer,
    register_tokenizer,
    tokenizer_class,
)

__version__ = "0.1.0"

__all__ = [
    "TOKENIZERS",
    "ActionTokenizer",
    "ChunkTokenizer",
    "EpisodeData",
    "KMeansTokenizer",
    "Normalizer",
    "Policy",
    "PolicyConfig",
    "TokenizerConfig",
    "TokenizerFitConfig",
    "TokenizerOutput",
    "TrajectoryWindows",
    "VQBeTConfig",
    "VQBeTPolicy",
    "fit_tokenizer",
    "load_dataset",
    "load_policy",
    "load_tokenizer",
    "policy_class",
    "register_policy",
    "register_tokenizer",
    "tokenizer_class",
]
