"""Token policies: acting time at batch 1 and training speed of VQ-BeT's code heads and of the
autoregressive policy over every tokenizer, on one dataset, each policy briefly trained first (so
that FAST sequences end where a trained policy ends them), against VQ-BeT over residual VQ
measured in the same run.

    python benchmarks/bench_token_policies.py datasets/kitchen_dart.hdf5 --obs-window 10 --chunk 10
    python benchmarks/bench_token_policies.py datasets/pusht.hdf5 --obs-window 5 --chunk 5 --steps 100

`--ar-tokens-only` builds the autoregressive rows without their offset (one decoding step and the
offset MLP fewer). A row may set its tokenizer's fields after a second colon, e.g.
`--rows ar:fast ar:fast:scale=2`: FAST at a coarser scale, fewer tokens a chunk.

Per row: tokens per chunk (the tokenizer's mean on the data; the mean the policy emitted when
acting on 1 in 97 windows; the timed chunk's, the first of them), training samples/s (batch 64),
and the median ms of `predict_action_chunk` at batch 1 (greedy), measured in alternating pairs
with the reference row's (this VM's speed drifts).
The transformer is the policy config's default (4 layers, 4 heads, 128 wide) for every row.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import time
from typing import Any

import numpy as np
import torch
from harness import alternating_pairs, call_ms

from vqbet.data import TrajectoryWindows, load_dataset
from vqbet.policies import Policy, policy_class
from vqbet.tokenizers import TokenizerFitConfig

TOKENIZERS: dict[str, dict[str, Any]] = {
    "rvq": dict(num_layers=2, codebook_size=16),
    "fsq": dict(num_layers=1, fsq_levels=[8, 5, 5, 5]),
    "kmeans": dict(num_bins=64),
    "bins": dict(num_bins=256),
    "fast": dict(scale=10.0, vocab_size=1024),
}
"""Each family at the setting of its configs/tokenizer/<name>.yaml."""
FAMILIES = ("vqbet", "ar")
ROWS = [("vqbet", t) for t in ("rvq", "fsq", "kmeans", "bins")] + [("ar", t) for t in TOKENIZERS]


def trained(
    family: str,
    tokenizer: str,
    windows: TrajectoryWindows,
    steps: int,
    fit_steps: int,
    tokenizer_fields: dict[str, float] | None = None,
    **extra: Any,
) -> tuple[Policy, float]:
    """A policy (its config's defaults, then `extra` fields; the tokenizer at `TOKENIZERS`, then
    `tokenizer_fields`) after phase 1 and `steps` phase-2 steps (batch 64, lr 1e-3), and its
    samples/s."""
    torch.manual_seed(0)
    data = windows.data
    fields = dict(
        obs_dim=data.obs.shape[1],
        action_dim=data.action.shape[1],
        obs_window=windows.obs_window,
        action_chunk=windows.action_chunk,
        temperature=0.0,
        **extra,
    )
    policy = policy_class(family).build(
        fields, {"name": tokenizer, **TOKENIZERS[tokenizer], **(tokenizer_fields or {})}
    )
    policy.fit_statistics(windows, seed=0, tokenizer_fit=TokenizerFitConfig(steps=fit_steps), progress=False)
    policy.freeze_statistics()
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    loader = torch.utils.data.DataLoader(windows, batch_size=64, shuffle=True, drop_last=True)
    done, start = 0, time.perf_counter()
    while done < steps:
        for batch in loader:
            loss, _ = policy(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return policy.eval(), 64 * steps / (time.perf_counter() - start)


def tokens_per_chunk(policy: Policy, windows: TrajectoryWindows) -> float:
    """Mean tokens of the data's chunks (FAST: their encoded lengths)."""
    tokenizer = getattr(policy, "tokenizer", None)
    if tokenizer is None or not tokenizer.variable_length:
        return float(tokenizer.tokens_per_chunk)
    chunks = policy.chunks_in_frame(windows)[:4096]
    return float(tokenizer.encode(chunks)[1].float().mean())


def parse_row(row: str) -> tuple[str, str, dict[str, float]]:
    """A `--rows` entry, family:tokenizer[:field=value,...] -> (family, tokenizer, its fields)."""
    parts = row.split(":")
    if len(parts) not in (2, 3) or parts[0] not in FAMILIES or parts[1] not in TOKENIZERS:
        raise SystemExit(
            f"--rows: {row!r} is not family:tokenizer[:field=value,...] "
            f"over {FAMILIES} and {list(TOKENIZERS)}"
        )
    fields: dict[str, float] = {}
    for item in parts[2].split(",") if len(parts) == 3 else []:
        key, _, value = item.partition("=")
        try:
            fields[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise SystemExit(f"--rows: {row!r}: {item!r} is not field=number") from None
    return parts[0], parts[1], fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="anything load_dataset reads")
    parser.add_argument("--obs-window", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300, help="phase-2 steps before timing")
    parser.add_argument("--fit-steps", type=int, default=300, help="tokenizer fit steps (rvq, fsq)")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="*", default=None, help="family:tokenizer, e.g. ar:fast")
    parser.add_argument(
        "--ar-tokens-only", action="store_true", help="ar rows without their offset (offset=false)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    windows = TrajectoryWindows(data, obs_window=args.obs_window, action_chunk=args.chunk)
    rows = [parse_row(r) for r in args.rows] if args.rows else [(f, t, {}) for f, t in ROWS]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {args.dataset}: "
        f"{data.num_episodes} episodes, obs {data.obs.shape[1]}, action {data.action.shape[1]}, "
        f"To {args.obs_window}, Ta {args.chunk}; {args.steps} training steps before timing\n"
    )
    reference, ref_rate = trained("vqbet", "rvq", windows, args.steps, args.fit_steps)
    obs = torch.from_numpy(np.stack([np.asarray(windows[i]["obs"]) for i in range(0, len(windows), 97)]))
    print(
        "| policy | tokenizer | tokens per chunk (data / emitted / timed chunk) | train samples/s "
        "| acting ms, batch 1 | VQ-BeT + rvq ms (same pairs) | / VQ-BeT + rvq |"
    )
    print("|---|---|---|---|---|---|---|")
    for family, tokenizer, fields in rows:
        policy, rate = (
            (reference, ref_rate)
            if (family, tokenizer, fields) == ("vqbet", "rvq", {})
            else trained(
                family,
                tokenizer,
                windows,
                args.steps,
                args.fit_steps,
                fields,
                **({"offset": False} if family == "ar" and args.ar_tokens_only else {}),
            )
        )
        emitted = "-"
        if family == "ar":
            with torch.no_grad():
                tokens = policy._sample(policy.observe(obs))[0]
            ended = tokens == policy.vocab  # FAST's end token (never emitted by fixed-length rows)
            lengths = torch.where(ended.any(1), ended.int().argmax(1), tokens.shape[1])
            # The timed chunk is the first observation's (greedy: the same tokens every call).
            emitted = f"{lengths.float().mean():.1f} / {int(lengths[0])}"
        label = " ".join([tokenizer] + [f"{k}={v}" for k, v in fields.items()])
        ref_ms, ms, ratio = alternating_pairs(
            lambda: call_ms(reference.predict_action_chunk, obs[:1], args.calls),
            lambda p=policy: call_ms(p.predict_action_chunk, obs[:1], args.calls),
            3,
        )
        print(
            f"| {family} | {label} | {tokens_per_chunk(policy, windows):.1f} / {emitted} | {rate:,.0f} "
            f"| {ms:.2f} | {ref_ms:.2f} | {ratio:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
