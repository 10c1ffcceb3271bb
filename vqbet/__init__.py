"""vqbet: residual-VQ action tokenizer and VQ-BeT behaviour policy."""

from vqbet.normalize import Normalizer
from vqbet.policies import Policy, VQBeTConfig, VQBeTPolicy, load_policy
from vqbet.tokenizer import ActionTokenizer, TokenizerConfig, TokenizerOutput
from vqbet.train import TokenizerFitConfig, fit_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ActionTokenizer",
    "Normalizer",
    "Policy",
    "TokenizerConfig",
    "TokenizerFitConfig",
    "TokenizerOutput",
    "VQBeTConfig",
    "VQBeTPolicy",
    "fit_tokenizer",
    "load_policy",
]
