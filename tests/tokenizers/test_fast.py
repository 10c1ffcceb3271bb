"""FAST: the DCT, exact token round trips, the error bound of rounding, persistence, a decode that
never raises on malformed sequences (and says which rows were), and bad input."""

import math
import sys

import pytest
import torch

from vqbet.tokenizers import FASTTokenizer, load_tokenizer
from vqbet.tokenizers.fast import dct_matrix

T, A = 10, 3


def chunks(n: int = 1000, seed: int = 0) -> torch.Tensor:
    """Smooth chunks (n, T, A): random phases and amplitudes, raw units of different scales."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T)[None, :, None]
    phase, amplitude = torch.rand(n, 1, A, generator=g) * 6, torch.randn(n, 1, A, generator=g)
    return amplitude * torch.sin(4 * t + phase) * torch.tensor([1.0, 5.0, 0.2]) + torch.tensor(
        [0.0, 2.0, -1.0]
    )


@pytest.fixture(scope="module")
def fitted() -> FASTTokenizer:
    tok = FASTTokenizer(action_dim=A, chunk_size=T, scale=10.0, vocab_size=256)
    metrics = tok.fit(chunks())
    assert metrics["tokens_per_chunk_mean"] < T * A  # BPE merged symbols
    return tok


def test_the_dct_is_orthonormal_and_matches_its_definition():
    d = dct_matrix(T)
    torch.testing.assert_close(d @ d.T, torch.eye(T), atol=1e-6, rtol=0)
    x = torch.randn(T, dtype=torch.float64)
    k = 3
    expected = math.sqrt(2 / T) * sum(x[t] * math.cos(math.pi / T * (t + 0.5) * k) for t in range(T))
    assert float(d.double()[k] @ x) == pytest.approx(float(expected), rel=1e-5)


def test_tokens_round_trip_exactly_and_chunks_within_the_rounding_bound(fitted):
    x = chunks(200, seed=1)
    tokens, lengths = fitted.encode(x)
    assert tokens.shape == (200, T * A) and lengths.max() <= T * A
    assert bool((tokens[torch.arange(T * A)[None] >= lengths[:, None]] == fitted.pad_id).all())
    decoded, valid = fitted.decode_with_validity(tokens, lengths)
    assert bool(valid.all()) and decoded.shape == x.shape
    again, again_lengths = fitted.encode(decoded)
    assert torch.equal(again, tokens) and torch.equal(again_lengths, lengths)
    # Rounding moves each coefficient by <= 0.5 / scale; the orthonormal inverse keeps the L2 norm,
    # so each unit-range value moves by at most sqrt(T) * 0.5 / scale, here in raw units:
    per_unit = (fitted.high - fitted.low) / 2 * fitted.normalizer.scale  # raw units per unit (A,)
    bound = math.sqrt(T) * 0.5 / fitted.config.scale * per_unit
    assert bool(((decoded - x).abs() <= bound + 1e-5).all())


def test_the_round_trip_without_bpe_is_the_one_through_the_tokens(fitted):
    # Chunks beyond the fitted range too: their coefficients clamp as encode's symbols do.
    x = torch.cat([chunks(100, seed=2), 3 * chunks(20, seed=3)])
    expected = fitted.normalizer.normalize(fitted.decode(*fitted.encode(x)))
    torch.testing.assert_close(fitted.round_trip_normalized(fitted.normalizer.normalize(x)), expected)


def test_save_and_load_keep_the_vocabulary(fitted, tmp_path):
    folder = fitted.save_pretrained(tmp_path / "fast")
    loaded = load_tokenizer(folder)
    x = chunks(50, seed=2)
    tokens, lengths = fitted.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(loaded.encode(x), (tokens, lengths), strict=True))
    assert torch.equal(loaded.decode(tokens, lengths), fitted.decode(tokens, lengths))
    (folder / "bpe.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"bpe\.json: a fitted 'fast' tokenizer needs"):
        load_tokenizer(folder)
    (folder / "bpe.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bpe\.json: not a tokenizers BPE file"):
        load_tokenizer(folder)


def test_malformed_sequences_decode_to_finite_chunks_and_are_counted(fitted):
    g = torch.Generator().manual_seed(3)
    random = torch.randint(fitted.vocab_size, (300, 12), generator=g)
    decoded, valid = fitted.decode_with_validity(random, torch.full((300,), 12))
    assert decoded.shape == (300, T, A) and bool(torch.isfinite(decoded).all())
    assert 0 < int(valid.sum()) < 300 or int(valid.sum()) == 0  # most random sequences are malformed
    tokens, lengths = fitted.encode(chunks(100, seed=4))
    corrupted = tokens.clone()
    corrupted[:, 0] = (corrupted[:, 0] + 1) % fitted.vocab_size
    decoded, valid = fitted.decode_with_validity(corrupted, lengths)
    assert bool(torch.isfinite(decoded).all())
    # Missing coefficients are zero: a sequence cut after its first token keeps frequency 0.
    cut, cut_valid = fitted.decode_with_validity(tokens[:, :1], torch.ones(100, dtype=torch.int64))
    assert not bool(cut_valid.any()) and bool(torch.isfinite(cut).all())


def test_bad_input_is_named(fitted):
    tokens, lengths = fitted.encode(chunks(4, seed=5))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, \d+\)"):
        fitted.decode(torch.full((2, 3), fitted.vocab_size + 5), torch.full((2,), 3))
    with pytest.raises(ValueError, match="lengths must be"):
        fitted.decode(tokens, lengths[:2])
    with pytest.raises(ValueError, match="tokens must be an int64 tensor"):
        fitted.decode(tokens.float(), lengths)
    with pytest.raises(ValueError, match=r"actions must have shape \(B, 10, 3\)"):
        fitted.encode(torch.zeros(2, T + 1, A))
    with pytest.raises(ValueError, match="NaN or inf"):
        fitted.encode(torch.full((2, T, A), float("nan")))
    with pytest.raises(ValueError, match="not fitted"):
        FASTTokenizer(action_dim=A, chunk_size=T).encode(chunks(2))
    with pytest.raises(ValueError, match="vocab_size 8 is smaller than the"):
        FASTTokenizer(action_dim=A, chunk_size=T, vocab_size=8).fit(chunks(100))


def test_without_the_bpe_library_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r'pip install "vqbet\[fast\]"'):
        FASTTokenizer(action_dim=A, chunk_size=T).fit(chunks(10))
