"""vqbet.tokenizers.resolution: discretiser specs and the held-out variance each leaves."""

from pathlib import Path

import pytest
import torch

from vqbet.tokenizers.fit import TokenizerFitConfig
from vqbet.tokenizers.resolution import Discretiser, resolution


def test_specs_parse_name_and_count_bits():
    assert Discretiser.parse("bins64") == Discretiser("bins", 64)
    rvq = Discretiser.parse(" rvq16x2 ")
    assert (rvq.kind, rvq.codebook_size, rvq.num_layers, rvq.name, rvq.bits) == ("rvq", 16, 2, "rvq16x2", 8.0)
    for bad in ("bins", "kmeans64", "rvq16", "rvq1x2", "rvq16x0", "bins1"):
        with pytest.raises(ValueError, match="discretiser"):
            Discretiser.parse(bad)


def clustered_chunks(n: int, centres: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(centres), (n,), generator=g)
    return centres[idx] + noise * torch.randn(n, *centres.shape[1:], generator=g)


def test_enough_bins_leave_only_the_noise_and_too_few_leave_most_of_the_modes():
    """Eight tight modes of 3 x 2 chunks (noise 0.05, spread ~3): 32 bins leave about the noise's
    share of the variance (k-means may merge modes at exactly 8), two bins leave most of it;
    measured on held-out chunks of the same modes."""
    centres = torch.randn(8, 3, 2, generator=torch.Generator().manual_seed(1)) * 3
    train, held_out = clustered_chunks(4000, centres, 0.05, 0), clustered_chunks(1000, centres, 0.05, 1)
    noise_share = 0.05**2 / held_out.reshape(-1, 6).var(0).mean().item()
    many = resolution(Discretiser.parse("bins32"), train, held_out)
    two = resolution(Discretiser.parse("bins2"), train, held_out)
    assert many["residual"] < 3 * noise_share and many["used"] > 0.2
    assert two["residual"] > 0.3 and two["used"] == 1.0


def test_more_residual_layers_leave_less_variance():
    torch.manual_seed(0)
    train, held_out = torch.randn(3000, 2, 2), torch.randn(500, 2, 2)
    fit = TokenizerFitConfig(steps=300, batch_size=256)
    one = resolution(Discretiser.parse("rvq8x1"), train, held_out, fit=fit)
    three = resolution(Discretiser.parse("rvq8x3"), train, held_out, fit=fit)
    assert three["residual"] < 0.7 * one["residual"] and one["residual"] < 1.0


def test_mismatched_chunks_are_refused():
    with pytest.raises(ValueError, match=r"\(N, T, A\) alike"):
        resolution(Discretiser.parse("bins4"), torch.randn(10, 3, 2), torch.randn(10, 2, 2))
    with pytest.raises(ValueError, match="N >= 2"):
        resolution(Discretiser.parse("bins4"), torch.randn(10, 3, 2), torch.randn(0, 3, 2))


def test_the_script_prints_a_row_per_chunk_and_discretiser_and_names_a_missing_file(
    tmp_path, monkeypatch, capsys
):
    import importlib.util
    import sys

    import numpy as np

    from vqbet.data import EpisodeData, write_hdf5

    rng = np.random.default_rng(0)
    episodes = [
        {
            "obs": rng.normal(size=(30, 3)).astype(np.float32),
            "action": rng.normal(size=(30, 2)).astype(np.float32),
        }
        for _ in range(12)
    ]
    path = write_hdf5(tmp_path / "demos.hdf5", EpisodeData.from_episodes(episodes))
    spec = importlib.util.spec_from_file_location(
        "tokenizer_resolution", Path(__file__).resolve().parents[2] / "scripts" / "tokenizer_resolution.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["x", str(path), "--chunks", "1", "3", "--discretisers", "bins4", "rvq4x2", "--steps", "20"]
    monkeypatch.setattr(sys, "argv", [*argv, "--relative-to", "0", "1"])
    script.main()
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 1 x 2") or line.startswith("| 3 x 2")
    ]
    assert [row.split(" | ")[1] for row in rows] == ["bins4", "rvq4x2", "bins4", "rvq4x2"]
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path / "missing.hdf5")])
    with pytest.raises(SystemExit):
        script.main()
    assert "missing.hdf5 does not exist" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*argv, "--relative-to", "3"])
    with pytest.raises(SystemExit):
        script.main()
    assert "the observations have 3 values" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*argv[:6], "kmeans64"])
    with pytest.raises(SystemExit):
        script.main()
    assert "discretiser 'kmeans64'" in capsys.readouterr().err
