"""`python -m vqbet.tokenizers`: the registered tokenizer families, with their defaults."""

import dataclasses

from vqbet.tokenizers import TOKENIZERS

for name, cls in sorted(TOKENIZERS.items()):
    tok = cls()
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    fields = ", ".join(f"{f.name}={getattr(tok.config, f.name)!r}" for f in dataclasses.fields(tok.config))
    print(f"{name:8s} {cls.__module__}.{cls.__qualname__}: {doc}")
    print(f"{'':8s} {tok.tokens_per_chunk} tokens per chunk of {tok.vocab_size} values (defaults: {fields})")
