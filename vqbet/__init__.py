"""vqbet: residual-VQ action tokenizer and VQ-BeT behaviour policy."""

from vqbet.normalize import Normalizer
from vqbet.tokenizer import ActionTokenizer, TokenizerConfig, TokenizerOutput
from vqbet.train import TokenizerFitConfig, fit_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ActionTokenizer",
    "Normalizer",
    "TokenizerConfig",
    "TokenizerFitConfig",
    "TokenizerOutput",
    "fit_tokenizer",
]
