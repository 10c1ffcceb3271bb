"""The contract every registered tokenizer family passes: fit, encode/decode shapes and ranges,
bit-exact save/load through `load_tokenizer`, clear errors on bad input, and a place in a policy.
A family defined here in a few lines joins the contract by registering itself: a new tokenizer is
one module (plus a config in configs/tokenizer/)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from policy_helpers import TA, two_mode_data

from vqbet.data import TrajectoryWindows
from vqbet.policies import VQBeTPolicy, load_policy, policy_class
from vqbet.tokenizers import (
    TOKENIZERS,
    ChunkConfig,
    ChunkTokenizer,
    TokenizerFitConfig,
    load_tokenizer,
    register_tokenizer,
    tokenizer_class,
)


@dataclass
class MeanBinsConfig(ChunkConfig):
    """Uniform bins of each action dimension's chunk mean (normalised) in [-2, 2]."""

    bins: int = 9


@register_tokenizer("test_mean_bins")
class MeanBinsTokenizer(ChunkTokenizer):
    """The smallest complete family: one token per action dimension, a constant chunk back."""

    config_class = MeanBinsConfig

    def __init__(self, config: MeanBinsConfig | None = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.num_layers, self.codebook_size = self.config.action_dim, self.config.bins
        self.register_buffer("centres", torch.linspace(-2, 2, self.config.bins))

    def _fit(self, chunks, *, seed, **options):
        self.normalizer.fit(chunks)
        error = (self.decode(self.encode(chunks)) - chunks).square().mean().item()
        return {"reconstruction_loss": error}

    def encode_normalized(self, chunks):
        distance = (chunks.mean(1)[..., None] - self.centres).abs()  # (B, A, K)
        return distance.argmin(-1)

    def decode_normalized(self, codes):
        return self.centres[codes][:, None].expand(-1, self.config.chunk_size, -1)


FAMILIES = sorted(name for name, cls in TOKENIZERS.items() if not cls.variable_length)
"""The fixed-length families (FAST, variable-length, has its own tests in test_fast.py)."""
OPTIONS = {
    "rvq": dict(num_layers=2, codebook_size=8, latent_dim=8, hidden_dim=32),
    "fsq": dict(num_layers=2, fsq_levels=[5, 5], latent_dim=8, hidden_dim=32),
    "kmeans": dict(num_bins=8),
    "bins": dict(num_bins=16),
}
EXACT = {"kmeans", "bins", "test_mean_bins"}
"""Families whose decoded chunk encodes back to the same tokens, by construction."""


def chunks(n: int = 256, seed: int = 0) -> torch.Tensor:
    """Two-mode chunks (n, TA, 2) in raw units, off-centre and unevenly scaled."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(n, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    base = torch.tensor([3.0, 0.5]) + torch.tensor([1.0, 20.0]) * sign
    return base + 0.1 * torch.randn(n, TA, 2, generator=g)


def fitted(name: str) -> ChunkTokenizer:
    torch.manual_seed(0)
    tok = tokenizer_class(name)(action_dim=2, chunk_size=TA, **OPTIONS.get(name, {}))
    metrics = tok.fit(chunks(), seed=0, config=TokenizerFitConfig(steps=200, batch_size=64), progress=False)
    assert np.isfinite(metrics["reconstruction_loss"])
    return tok.eval()


def test_the_registry_holds_the_families_and_names_what_it_does_not_know():
    assert {"rvq", "fsq", "kmeans", "bins", "test_mean_bins"} <= set(FAMILIES)
    assert TOKENIZERS["fast"].variable_length
    with pytest.raises(ValueError, match=r"unknown tokenizer 'vqvae'; registered: \["):
        tokenizer_class("vqvae")
    with pytest.raises(ValueError, match="already registered"):
        register_tokenizer("rvq")(MeanBinsTokenizer)


@pytest.mark.parametrize("name", FAMILIES)
def test_tokens_are_integers_in_range_and_decode_to_raw_chunks(name):
    tok = fitted(name)
    x = chunks(32, seed=1)
    codes = tok.encode(x)
    assert codes.dtype == torch.int64 and codes.shape == (32, tok.tokens_per_chunk)
    assert int(codes.min()) >= 0 and int(codes.max()) < tok.vocab_size
    decoded = tok.decode(codes)
    assert decoded.shape == x.shape
    # Raw units: the decoded chunks land near the modes, not in normalised space around 0.
    assert (decoded - x).abs().mean() < 0.5 * (x - x.mean(0)).abs().mean()


@pytest.mark.parametrize("name", sorted(EXACT))
def test_decoded_tokens_encode_back_to_themselves(name):
    tok = fitted(name)
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(tok.vocab_size, (64, tok.tokens_per_chunk), generator=g)
    if name == "kmeans":  # every bin is a fitted centre; two equal centres would share a token
        tokens = tok.encode(chunks(64, seed=4))
    assert torch.equal(tok.encode(tok.decode(tokens)), tokens)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_round_trip_is_decode_of_encode_in_normalised_units(name):
    tok = fitted(name)
    x = chunks(32, seed=5)
    expected = tok.normalizer.normalize(tok.decode(tok.encode(x)))
    torch.testing.assert_close(tok.round_trip_normalized(tok.normalizer.normalize(x)), expected)


@pytest.mark.parametrize("name", FAMILIES)
def test_save_and_load_are_bit_exact_through_load_tokenizer(name, tmp_path):
    tok = fitted(name)
    folder = tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(folder)
    assert type(loaded) is type(tok) and loaded.config == tok.config
    state, other = tok.state_dict(), loaded.state_dict()
    assert state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)
    x = chunks(16, seed=2)
    assert torch.equal(loaded.encode(x), tok.encode(x))
    assert torch.equal(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    assert type(type(tok).from_pretrained(folder)) is type(tok)
    other_family = next(f for f in FAMILIES if f != name)
    with pytest.raises(ValueError, match=f"holds a '{name}' tokenizer, not a"):
        tokenizer_class(other_family).from_pretrained(folder)


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_input_is_named(name):
    tok = fitted(name)
    with pytest.raises(ValueError, match=rf"actions must have shape \(B, {TA}, 2\)"):
        tok.encode(torch.zeros(3, TA + 1, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        tok.encode(torch.full((3, TA, 2), float("nan")))
    with pytest.raises(ValueError, match="floating point"):
        tok.encode(torch.zeros(3, TA, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=rf"codes must lie in \[0, {tok.vocab_size}\)"):
        tok.decode(torch.full((2, tok.tokens_per_chunk), tok.vocab_size))
    with pytest.raises(ValueError, match=rf"codes must have shape \(B, {tok.tokens_per_chunk}\)"):
        tok.decode(torch.zeros(2, tok.tokens_per_chunk + 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="codes must be an int64 tensor"):
        tok.decode(torch.zeros(2, tok.tokens_per_chunk))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_tokenizer_that_was_not_fitted_says_so(name):
    tok = tokenizer_class(name)(action_dim=2, chunk_size=TA, **OPTIONS.get(name, {}))
    with pytest.raises(ValueError, match=f"this '{name}' tokenizer is not fitted: call fit"):
        tok.encode(chunks(4))
    with pytest.raises(ValueError, match="not fitted"):
        tok.decode(torch.zeros(4, tok.tokens_per_chunk, dtype=torch.int64))


@pytest.mark.parametrize("name", FAMILIES)
def test_encode_never_changes_state(name):
    tok = fitted(name).train()
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    tok.encode(chunks(64, seed=3))
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())


@pytest.mark.parametrize("name", FAMILIES)
def test_vqbet_trains_over_the_family_and_its_checkpoint_loads(name, tmp_path):
    """The policy seam: `policy_class("vqbet").build(..., {"name": name, ...})`, phase 1 through
    the tokenizer's own `fit`, a finite loss with gradients, and load_policy restoring the family."""
    torch.manual_seed(0)
    dims = dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, n_layer=1, n_head=2, n_embd=16)
    policy = policy_class("vqbet").build(dims, {"name": name, **OPTIONS.get(name, {})})
    assert isinstance(policy, VQBeTPolicy) and type(policy.tokenizer) is tokenizer_class(name)
    windows = TrajectoryWindows(two_mode_data(), obs_window=3, action_chunk=TA)
    policy.fit_statistics(windows, tokenizer_fit=TokenizerFitConfig(steps=20, batch_size=64), progress=False)
    policy.freeze_statistics()
    batch = {k: torch.as_tensor(v)[None] for k, v in windows[0].items()}
    loss, metrics = policy.train()(batch)
    loss.backward()
    assert torch.isfinite(loss) and "code_accuracy/0" in metrics
    assert policy.obs_embed.weight.grad is not None
    loaded = load_policy(policy.save_pretrained(tmp_path / "policy"))
    assert type(loaded.tokenizer) is tokenizer_class(name)
    obs = torch.randn(2, 3, 2)
    policy.eval()
    torch.manual_seed(1)
    expected = policy.predict_action_chunk(obs)
    torch.manual_seed(1)
    assert torch.equal(loaded.predict_action_chunk(obs), expected)
