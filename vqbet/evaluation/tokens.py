"""Why a token policy acts as it does, on held-out windows: how often it predicts each token of the
demonstrated chunk (teacher-forced: every earlier token given), and how far its chunks land from
the demonstrated ones, through the tokens alone, with the offset, acting greedily and sampling as
the policy acts (at its temperature).

For the autoregressive policy (`ar`) a position is a token of the sequence (FAST: up to each row's
end token, which counts as a position); for VQ-BeT's code heads (`vqbet`) it is a code layer.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbet.data import TrajectoryWindows
from vqbet.evaluation.held_out import draw_batch
from vqbet.policies import ARPolicy, VQBeTPolicy
from vqbet.policies.acting import state_of, to_relative
from vqbet.policies.ar import IGNORE


@torch.no_grad()
def token_diagnostics(
    policy: ARPolicy | VQBeTPolicy,
    windows: TrajectoryWindows,
    max_windows: int = 1024,
    seed: int = 0,
    samples: int = 10,
) -> dict[str, Any]:
    """On up to `max_windows` of `windows` (drawn with `seed`), the last window step's chunk:

    - `position_accuracy`: per token position (list), the teacher-forced argmax's accuracy over
      the rows that have that position; `sequence_accuracy`: whole sequences right;
    - `round_trip_mae`, `offset_mae`, `greedy_mae`: mean absolute error (raw action units) of the
      chunk the true tokens decode to, of that chunk plus the policy's offset (NaN without one),
      and of the policy's greedy chunk (temperature 0);
    - `sampled_mae`, `best_of_<samples>_mae`: of `samples` chunks sampled at the policy's acting
      temperature, the mean error and the closest one's (a policy that picks the right mode less
      often has the larger mean; one that never produces it, the larger best-of)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not isinstance(policy, (ARPolicy, VQBeTPolicy)):
        raise ValueError(f"token diagnostics need an 'ar' or 'vqbet' policy, got {policy.name!r}")
    was_training, temperature = policy.training, policy.config.temperature
    policy.eval()
    batch = draw_batch(windows, max_windows, seed, next(policy.parameters()).device)
    obs, action = policy.check_batch(batch)
    c = policy.config
    chunks = to_relative(action[:, -1], state_of(obs)[:, -1], c.action_relative_to)
    normalizer = policy.tokenizer.normalizer
    target = normalizer.normalize(chunks)
    decoded = policy.tokenizer.round_trip_normalized(target)
    offset = None
    if isinstance(policy, ARPolicy):
        targets = policy._targets(chunks)
        out, last = policy.teacher_forced(policy.observe(obs), targets)
        valid = targets != IGNORE
        right = (policy.head(out).argmax(-1) == targets) & valid
        if last is not None:
            offset = policy.offset_head(last)
    else:
        h = policy.features(obs, batch.get("goal"), last_only=True)[:, -1]
        codes = policy.tokenizer.encode_normalized(target)
        logits, offset = policy.heads(h, codes)
        right, valid = codes == logits.argmax(-1).T, torch.ones_like(codes, dtype=torch.bool)
    try:
        policy.config.temperature = 0.0
        greedy = policy.predict_action_chunk(obs, batch.get("goal"))
        policy.config.temperature = temperature
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            errors = torch.stack(
                [
                    (policy.predict_action_chunk(obs, batch.get("goal")) - action[:, -1]).abs().mean((1, 2))
                    for _ in range(samples)
                ]
            )  # (samples, N)
    finally:
        policy.config.temperature = temperature
        policy.train(was_training)
    has = valid.sum(dim=0)
    kept = has > 0
    accuracy = right.sum(dim=0)[kept] / has[kept]
    corrected = decoded + offset.view_as(target) if offset is not None else None
    return {
        "windows": len(chunks),
        "position_accuracy": [round(float(a), 4) for a in accuracy],
        "sequence_accuracy": float((right == valid).all(dim=1).float().mean()),
        "round_trip_mae": float((normalizer.unnormalize(decoded) - chunks).abs().mean()),
        "offset_mae": float("nan")
        if corrected is None
        else float((normalizer.unnormalize(corrected) - chunks).abs().mean()),
        "greedy_mae": float((greedy - action[:, -1]).abs().mean()),
        "temperature": temperature,
        "sampled_mae": float(errors.mean()),
        f"best_of_{samples}_mae": float(errors.amin(0).mean()),
    }
