"""Token diagnostics (vqbet.evaluation.tokens, scripts/diagnose.py tokens): per-position accuracy
agrees with the policy's own training metrics on the same windows, the offset's error is the
decode's corrected, and what is not a token policy or not a run folder is named."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_helpers import TA, fitted_policy, two_mode_data

from vqbet.data import TrajectoryWindows
from vqbet.evaluation.tokens import token_diagnostics
from vqbet.policies import policy_class
from vqbet.tokenizers import TokenizerFitConfig

ROOT = Path(__file__).resolve().parents[2]


def trained_ar(steps: int = 80):
    torch.manual_seed(0)
    windows = TrajectoryWindows(two_mode_data(episodes=24), obs_window=3, action_chunk=TA)
    fields = dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, n_layer=1, n_head=2, n_embd=32)
    policy = policy_class("ar").build(
        {**fields, "dropout": 0.0}, {"name": "rvq", "num_layers": 2, "codebook_size": 8, "latent_dim": 16}
    )
    policy.fit_statistics(windows, seed=0, tokenizer_fit=TokenizerFitConfig(steps=30), progress=False)
    policy.freeze_statistics()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    loader = torch.utils.data.DataLoader(windows, batch_size=64, shuffle=True)
    for _, batch in zip(range(steps), iter(lambda: next(iter(loader)), None), strict=False):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy.eval(), windows


def test_the_ar_policys_positions_agree_with_its_own_metrics_and_the_offset_corrects():
    policy, windows = trained_ar()
    out = token_diagnostics(policy, windows, max_windows=len(windows))
    assert out["windows"] == len(windows) and len(out["position_accuracy"]) == 2
    batch = torch.utils.data.default_collate([windows[i] for i in range(len(windows))])
    with torch.no_grad():
        _, metrics = policy(batch)
    assert out["position_accuracy"][0] == pytest.approx(metrics["first_token_accuracy"], abs=1e-4)
    assert np.mean(out["position_accuracy"]) == pytest.approx(metrics["token_accuracy"], abs=1e-4)
    assert out["sequence_accuracy"] == pytest.approx(metrics["sequence_accuracy"], abs=1e-6)
    assert out["offset_mae"] < out["round_trip_mae"]  # the trained offset closes part of the gap
    assert policy.config.temperature == 1.0 and not policy.training  # restored
    assert out["temperature"] == 1.0 and out["best_of_10_mae"] < out["sampled_mae"]


def test_sampled_chunks_are_drawn_at_the_acting_temperature_and_leave_the_callers_rng_alone():
    policy, windows = trained_ar(steps=20)
    policy.config.temperature = 0.0  # deterministic: every sample is the greedy chunk
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    out = token_diagnostics(policy, windows, max_windows=64, samples=3)
    assert torch.equal(torch.rand(3), expected)
    assert out["sampled_mae"] == pytest.approx(out["greedy_mae"], rel=1e-6)
    assert out["best_of_3_mae"] == pytest.approx(out["greedy_mae"], rel=1e-6)
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        token_diagnostics(policy, windows, samples=0)


def test_vqbet_layers_are_positions_and_other_policies_are_refused(tmp_path):
    policy, _ = fitted_policy(tmp_path, steps=30)
    windows = TrajectoryWindows(two_mode_data(), obs_window=3, action_chunk=TA)
    out = token_diagnostics(policy, windows, max_windows=64)
    assert len(out["position_accuracy"]) == 2 and np.isfinite(out["offset_mae"])
    assert out["sequence_accuracy"] <= min(out["position_accuracy"])
    mlp = policy_class("mlp").build(dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA))
    with pytest.raises(ValueError, match="need an 'ar' or 'vqbet' policy, got 'mlp'"):
        token_diagnostics(mlp, windows)


def test_the_script_names_a_folder_that_is_not_a_run(tmp_path):
    spec = importlib.util.spec_from_file_location("diagnose", ROOT / "scripts" / "diagnose.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(FileNotFoundError, match=r"config.yaml: not a training run folder"):
        script.diagnose("tokens", tmp_path)
    with pytest.raises(ValueError, match=r"kind must be one of \['history', 'tokens'\], got 'codes'"):
        script.diagnose("codes", tmp_path)
