"""Action tokenizers behind one interface (`ChunkTokenizer`): chunks (B, T, A) <-> tokens (B, L).

    from vqbet.tokenizers import ActionTokenizer, load_tokenizer, tokenizer_class
    tok = tokenizer_class("rvq")(action_dim=2, chunk_size=5)   # or ActionTokenizer(...)
    tok.fit(chunks, seed=0); tok.save_pretrained("out/tok"); tok = load_tokenizer("out/tok")

Registered: "rvq" (ActionTokenizer: residual VQ or FSQ autoencoder) and "kmeans" (BeT's bins).
"""

from vqbet.tokenizers.base import (
    TOKENIZERS,
    ChunkTokenizer,
    load_tokenizer,
    register_tokenizer,
    tokenizer_class,
)
from vqbet.tokenizers.fit import TokenizerFitConfig, fit_tokenizer
from vqbet.tokenizers.kmeans import KMeansTokenizer, KMeansTokenizerConfig
from vqbet.tokenizers.rvq import ActionTokenizer, TokenizerConfig, TokenizerOutput

__all__ = [
    "TOKENIZERS",
    "ActionTokenizer",
    "ChunkTokenizer",
    "KMeansTokenizer",
    "KMeansTokenizerConfig",
    "TokenizerConfig",
    "TokenizerFitConfig",
    "TokenizerOutput",
    "fit_tokenizer",
    "load_tokenizer",
    "register_tokenizer",
    "tokenizer_class",
]
