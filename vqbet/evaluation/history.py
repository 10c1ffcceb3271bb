"""Does a policy copy the motion it has just made? On held-out windows, the entries its actions are
relative to (the agent's position, `action_relative_to`) are moved toward their last value over
the window's earlier steps (a factor 0 shows the agent standing still, 1 the window as recorded,
2 twice as fast), and the chunks the policy samples there are measured by how far they move from
that last position. A policy that reads its speed off the window predicts a shorter motion after
a slow history, and in closed loop a slow start then stays slow (the copycat problem of behaviour
cloning with observation histories)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vqbet.data import TrajectoryWindows
from vqbet.evaluation.held_out import draw_batch
from vqbet.policies import Policy
from vqbet.policies.acting import state_of

FACTORS = (0.0, 0.5, 1.0, 2.0)


@torch.no_grad()
def history_sensitivity(
    policy: Policy,
    windows: TrajectoryWindows,
    factors: Sequence[float] = FACTORS,
    max_windows: int = 1024,
    samples: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """On up to `max_windows` of `windows` (drawn with `seed`): `demonstrated`, the mean distance
    (action units) of the demonstrated chunk's actions from the agent's last position, and
    `motion` {factor: the same for chunks the policy samples at its acting temperature (`samples`
    per window) with the history rescaled by that factor}; `motion_ratio` {factor: motion over
    the motion at factor 1}. Needs a policy with `action_relative_to` (what the agent's position
    is); the caller's random state is left as it was."""
    index = list(policy.config.action_relative_to)
    if not index:
        raise ValueError(
            f"history_sensitivity needs a policy whose actions are relative to observation entries "
            f"(action_relative_to, e.g. the agent's position); {policy.name!r} has none"
        )
    if samples < 1 or not factors:
        raise ValueError(f"samples must be >= 1 and factors not empty, got {samples} and {list(factors)}")
    was_training = policy.training
    policy.eval()
    batch = draw_batch(windows, max_windows, seed, next(policy.parameters()).device)
    obs, action = policy.check_batch(batch)
    state = state_of(obs)
    last = state[:, -1:, index]  # (N, 1, A): the position the chunk moves from

    def motion(chunks: torch.Tensor) -> float:  # chunks (N, Ta, A) absolute
        return float((chunks - last).norm(dim=-1).mean())

    out: dict[float, float] = {}
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            for factor in factors:
                moved = state.clone()
                moved[..., index] = last + factor * (state[..., index] - last)
                window = {**obs, "state": moved} if isinstance(obs, dict) else moved
                torch.manual_seed(seed)
                chunks = [policy.predict_action_chunk(window, batch.get("goal")) for _ in range(samples)]
                out[float(factor)] = sum(motion(chunk) for chunk in chunks) / samples
    finally:
        policy.train(was_training)
    base = out.get(1.0)
    return {
        "windows": len(action),
        "temperature": getattr(policy.config, "temperature", None),
        "demonstrated": motion(action[:, -1]),
        "motion": out,
        "motion_ratio": {f: m / base for f, m in out.items()} if base else {},
    }
