"""Shared test helpers for policies: a two-mode dataset and small VQ-BeT policies."""

import numpy as np
import torch

from vqbet import ActionTokenizer, TokenizerFitConfig, fit_tokenizer
from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.policies import VQBeTConfig, VQBeTPolicy
from vqbet.training.loop import PolicyTrainConfig, train_policy

TA = 4


def two_mode_data(episodes: int = 60, length: int = 12, seed: int = 0) -> EpisodeData:
    """From the same start (0, 0) half the episodes move up, half down: a 2-mode dataset."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(episodes):
        direction = 1.0 if i % 2 == 0 else -1.0
        velocity = np.array([0.3, direction], dtype=np.float32) + rng.normal(0, 0.02, 2).astype(np.float32)
        pos = np.cumsum(np.repeat(velocity[None] * 0.1, length, 0), axis=0) - velocity * 0.1
        eps.append({"obs": pos.astype(np.float32), "action": np.repeat(velocity[None], length, 0)})
    return EpisodeData.from_episodes(eps)


def make_policy(layers: int = 2, **overrides) -> VQBeTPolicy:
    tok = ActionTokenizer(
        action_dim=2, chunk_size=TA, num_layers=layers, codebook_size=8, latent_dim=16, hidden_dim=32
    )
    fields = dict(
        obs_dim=2,
        action_dim=2,
        obs_window=3,
        action_chunk=TA,
        n_layer=1,
        n_head=2,
        n_embd=32,
        head_hidden=64,
        code_embd=8,
        dropout=0.0,
    )
    fields.update(overrides)
    return VQBeTPolicy(VQBeTConfig(**fields), tok)


def fitted_policy(tmp_path, layers=2, steps=300, **overrides):
    torch.manual_seed(0)
    data = two_mode_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=TA)
    policy = make_policy(layers, **overrides)
    fit_tokenizer(policy.tokenizer, windows.action_chunks(), TokenizerFitConfig(steps=200), progress=False)
    policy.obs_normalizer.fit(torch.from_numpy(data.obs))
    cfg = PolicyTrainConfig(
        steps=steps,
        batch_size=64,
        lr=3e-3,
        warmup_steps=10,
        eval_every=steps,
        checkpoint_every=steps,
        log_every=10,
        device="cpu",
    )
    state = train_policy(policy, windows, None, cfg, tmp_path / "run", progress=False)
    return policy.eval(), state
