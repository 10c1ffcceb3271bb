"""ActionTokenizer: round trips, fitting, persistence and bad input."""

import json

import pytest
import torch

from vqbet import ActionTokenizer, TokenizerConfig, TokenizerFitConfig, fit_tokenizer


def curve_chunks(n: int, chunk: int = 5, seed: int = 0) -> torch.Tensor:
    """Four families of straight 2-D strokes with noisy heading and speed: (n, chunk, 2)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, chunk)
    family = torch.randint(4, (n,), generator=g)
    heading = family * torch.pi / 2 + 0.2 * torch.randn(n, generator=g)
    speed = 1 + 0.2 * torch.randn(n, generator=g)
    x = torch.cos(heading)[:, None] * t * speed[:, None]
    y = torch.sin(heading)[:, None] * t * speed[:, None]
    return torch.stack([x, y], dim=-1)


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    tok = ActionTokenizer(
        action_dim=2, chunk_size=5, num_layers=2, codebook_size=16, hidden_dim=64, latent_dim=16
    )
    history = fit_tokenizer(tok, curve_chunks(2000), TokenizerFitConfig(steps=300), progress=False)
    return tok, history


def test_fit_reduces_loss_and_uses_codes(fitted):
    tok, history = fitted
    assert history[-1]["reconstruction_loss"] < 0.2 * history[0]["reconstruction_loss"]
    assert history[-1]["used_fraction/0"] > 0.9 and history[-1]["used_fraction/1"] > 0.9
    assert not tok.training


def test_encode_decode_shapes_and_reconstruction(fitted):
    tok, _ = fitted
    actions = curve_chunks(256, seed=1)
    codes = tok.encode(actions)
    assert codes.shape == (256, 2) and codes.dtype == torch.int64
    decoded = tok.decode(codes)
    assert decoded.shape == (256, 5, 2)
    # Reconstruction far better than predicting the mean chunk.
    baseline = (actions - actions.mean(0)).square().mean()
    assert (decoded - actions).square().mean() < 0.1 * baseline
    out = tok(actions)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(out.reconstruction, decoded)


def test_encode_never_changes_state_in_training_mode(fitted):
    tok, _ = fitted
    tok.train()
    try:
        before = {k: v.clone() for k, v in tok.state_dict().items()}
        tok.encode(curve_chunks(64, seed=2))
        for key, value in tok.state_dict().items():
            assert torch.equal(value, before[key]), key
    finally:
        tok.eval()


def test_save_load_is_bit_exact(fitted, tmp_path):
    tok, _ = fitted
    tok.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    loaded = ActionTokenizer.from_pretrained(tmp_path / "tok")
    for (k, a), (k2, b) in zip(tok.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    actions = curve_chunks(32, seed=3)
    assert torch.equal(tok.encode(actions), loaded.encode(actions))
    assert torch.equal(tok.decode(tok.encode(actions)), loaded.decode(loaded.encode(actions)))
    tok.save_pretrained(tmp_path / "tok")  # overwriting an existing folder works
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("quantizer", ["rvq", "fsq"])
def test_any_number_of_layers(layers, quantizer):
    tok = ActionTokenizer(
        action_dim=3,
        chunk_size=4,
        num_layers=layers,
        quantizer=quantizer,
        codebook_size=8,
        fsq_levels=[3, 3],
        latent_dim=8,
        hidden_dim=32,
    )
    fit_tokenizer(tok, torch.randn(300, 4, 3), TokenizerFitConfig(steps=5), progress=False)
    codes = tok.encode(torch.randn(10, 4, 3))
    assert codes.shape == (10, layers)
    assert tok.decode(codes).shape == (10, 4, 3)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (torch.randn(4, 5), "shape"),
        (torch.randn(4, 5, 3), r"\(B, 5, 2\)"),
        (torch.randn(4, 6, 2), r"\(B, 5, 2\)"),
        (torch.full((4, 5, 2), float("nan")), "NaN"),
        (torch.tensor([[[1.0, float("inf")]] * 5]), "NaN or inf"),
    ],
)
def test_bad_actions_raise(actions, message):
    tok = ActionTokenizer(action_dim=2, chunk_size=5)
    with pytest.raises(ValueError, match=message):
        tok.encode(actions)


def test_bad_codes_and_config_raise():
    tok = ActionTokenizer(action_dim=2, chunk_size=5, codebook_size=16)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        tok.decode(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        tok.decode(torch.full((3, 2), 16))
    with pytest.raises(ValueError, match="codebook_size"):
        TokenizerConfig(codebook_size=1)
    with pytest.raises(ValueError, match="levels"):
        ActionTokenizer(quantizer="fsq", fsq_levels=[1, 4])


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ActionTokenizer.from_pretrained(tmp_path / "nowhere")
    tok = ActionTokenizer(action_dim=2, chunk_size=5)
    folder = tok.save_pretrained(tmp_path / "tok")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        ActionTokenizer.from_pretrained(folder)

    folder = tok.save_pretrained(tmp_path / "tok2")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        ActionTokenizer.from_pretrained(folder)

    # A config that does not match the weights: the mismatched tensor is named.
    folder = tok.save_pretrained(tmp_path / "tok3")
    meta = json.loads((folder / "config.json").read_text())
    meta["tokenizer"]["codebook_size"] = 32
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="codebook"):
        ActionTokenizer.from_pretrained(folder)

    (folder / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"config\.json"):
        ActionTokenizer.from_pretrained(folder)

    meta["tokenizer"]["no_such_key"] = 1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no_such_key"):
        ActionTokenizer.from_pretrained(folder)


def test_tensorboard_logging(tmp_path):
    tok = ActionTokenizer(action_dim=2, chunk_size=5, hidden_dim=32, latent_dim=8)
    fit_tokenizer(
        tok,
        curve_chunks(200),
        TokenizerFitConfig(steps=3, log_every=1),
        log_dir=tmp_path / "tb",
        progress=False,
    )
    assert any((tmp_path / "tb").glob("events.out.tfevents.*"))
