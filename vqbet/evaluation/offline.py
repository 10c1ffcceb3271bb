"""Offline evaluation, for demonstrations without a simulator: how well a policy predicts held-out
demonstrations. A multimodal policy is judged by its best sample, not its mean: where the
demonstrator could go left or right, a policy that samples either is right, and one that predicts
their average is wrong."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vqbet.data import TrajectoryWindows
from vqbet.policies import Policy
from vqbet.policies.acting import batch_to, state_of, to_relative


def _usage(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Per layer: fraction of codes used and perplexity, from codes (N, L)."""
    out = {}
    for layer in range(codes.shape[1]):
        counts = torch.bincount(codes[:, layer], minlength=codebook_size).double()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        out[f"used_fraction/{layer}"] = float((counts > 0).double().mean())
        out[f"perplexity/{layer}"] = math.exp(entropy)
    return out


@torch.no_grad()
def evaluate_offline(
    policy: Policy,
    windows: TrajectoryWindows | Dataset,
    *,
    samples: int = 10,
    batch_size: int = 256,
    max_windows: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of `policy` on `windows` (held-out episodes; any dataset of such windows): each
    predicted chunk against the demonstrated one at the window's last step, over the steps the
    episode really has:

    - `greedy_mse` / `greedy_mae`: the chunk with the most likely codes (temperature 0);
    - `best_of_<samples>_mse`: the closest of `samples` chunks sampled at the policy's temperature
      (equal to the greedy error for a deterministic policy);
    - `*_nmse`: the same divided by the demonstrations' per-dimension variance (scale-free);
    - the policy's training metrics (`loss`, `code_accuracy/<layer>`, `token_accuracy`, ...);
      `reconstruction_mse` (normalised units) of the tokenizer on these chunks, and for a
      fixed-length tokenizer its `used_fraction/<layer>`, `perplexity/<layer>`.
    """
    was_training = policy.training
    policy.eval()
    device = next(policy.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(windows), generator=generator)[: max_windows or len(windows)].tolist()
    loader = DataLoader(torch.utils.data.Subset(windows, sorted(chosen)), batch_size=batch_size)
    totals: dict[str, float] = {}
    count, steps = 0, 0.0
    targets, codes = [], []
    temperature = getattr(policy.config, "temperature", None)
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for batch in loader:
            batch = batch_to(batch, device)
            n = batch["action"].shape[0]
            _, metrics = policy(batch)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value * n
            target, mask = batch["action"][:, -1], batch["action_mask"][:, -1, :, None].float()
            targets.append(target[mask[..., 0].bool()].cpu())  # (steps, A): the real steps only

            def error(chunk: torch.Tensor, target=target, mask=mask) -> torch.Tensor:
                return ((chunk - target).square() * mask).sum((1, 2))  # (B,) summed over real steps

            if temperature is not None:
                policy.config.temperature = 0.0
            greedy = policy.predict_action_chunk(batch["obs"])
            totals["greedy_se"] = totals.get("greedy_se", 0.0) + error(greedy).sum().item()
            totals["greedy_ae"] = totals.get("greedy_ae", 0.0) + ((greedy - target).abs() * mask).sum().item()
            if temperature is not None:
                policy.config.temperature = temperature
            best = torch.stack(
                [error(policy.predict_action_chunk(batch["obs"])) for _ in range(samples)]
            ).amin(0)
            totals["best_se"] = totals.get("best_se", 0.0) + best.sum().item()
            steps += mask.sum().item()
            count += n
            tokenizer = getattr(policy, "tokenizer", None)
            if tokenizer is not None:
                state = state_of(batch["obs"])[:, -1]
                chunk = to_relative(target, state, policy.config.action_relative_to)
                normalised = tokenizer.normalizer.normalize(chunk)
                recon = tokenizer.round_trip_normalized(normalised)
                se = ((recon - normalised).square() * mask).sum().item()
                totals["recon_se"] = totals.get("recon_se", 0.0) + se
                if not tokenizer.variable_length:  # usage per token position (FAST has none)
                    codes.append(tokenizer.encode_normalized(normalised).cpu())
    finally:
        if temperature is not None:
            policy.config.temperature = temperature
        torch.set_rng_state(rng_state)
        policy.train(was_training)
    action_dim = targets[0].shape[-1]
    variance = torch.cat(targets).reshape(-1, action_dim).var(0).mean().clamp_min(1e-12).item()
    per_value = max(steps * action_dim, 1.0)
    out: dict[str, Any] = {k: v / count for k, v in totals.items() if not k.endswith(("_se", "_ae"))}
    out.update(
        windows=count,
        samples=samples,
        greedy_mse=totals["greedy_se"] / per_value,
        greedy_mae=totals["greedy_ae"] / per_value,
        **{f"best_of_{samples}_mse": totals["best_se"] / per_value},
    )
    out["greedy_nmse"] = out["greedy_mse"] / variance
    out[f"best_of_{samples}_nmse"] = out[f"best_of_{samples}_mse"] / variance
    if "recon_se" in totals:
        out["reconstruction_mse"] = totals["recon_se"] / per_value
    if codes:
        out.update(_usage(torch.cat(codes), policy.tokenizer.codebook_size))
    return out
