"""Action tokenizers behind one interface (`ChunkTokenizer`): chunks (B, T, A) <-> tokens (B, L).

    from vqbet.tokenizers import ActionTokenizer, load_tokenizer, tokenizer_class
    tok = tokenizer_class("rvq")(action_dim=2, chunk_size=5)   # or ActionTokenizer(...)
    tok.fit(chunks, seed=0); tok.save_pretrained("out/tok"); tok = load_tokenizer("out/tok")

Registered (`python -m vqbet.tokenizers` lists them): "rvq" (ActionTokenizer: residual VQ
autoencoder), "fsq" (the same around finite scalar quantisation, residual with L > 1), "kmeans"
(BeT's k-means bins, one token per chunk), "bins" (per-dimension uniform bins, RT-2 / OpenVLA) and
"fast" (FAST: DCT + byte-pair encoding, variable length; needs `vqbet[fast]`).
"""

from vqbet.tokenizers.base import (
    TOKENIZERS,
    ChunkConfig,
    ChunkTokenizer,
    load_tokenizer,
    register_tokenizer,
    tokenizer_class,
)
from vqbet.tokenizers.bins import BinsTokenizer, BinsTokenizerConfig
from vqbet.tokenizers.fast import FASTTokenizer, FASTTokenizerConfig
from vqbet.tokenizers.fit import TokenizerFitConfig, fit_tokenizer
from vqbet.tokenizers.fsq import FSQTokenizer, FSQTokenizerConfig
from vqbet.tokenizers.kmeans import KMeansTokenizer, KMeansTokenizerConfig
from vqbet.tokenizers.rvq import ActionTokenizer, TokenizerConfig, TokenizerOutput

__all__ = [
    "TOKENIZERS",
    "ActionTokenizer",
    "BinsTokenizer",
    "BinsTokenizerConfig",
    "ChunkConfig",
    "ChunkTokenizer",
    "FASTTokenizer",
    "FASTTokenizerConfig",
    "FSQTokenizer",
    "FSQTokenizerConfig",
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
