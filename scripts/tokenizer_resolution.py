"""How much of a dataset's action-chunk variance each discretiser leaves for the offset head
(vqbet.tokenizers.resolution): k-means bins (BeT) against residual codes (VQ-BeT), per chunk length, fitted on
most episodes and measured on held-out ones.

    python scripts/tokenizer_resolution.py datasets/kitchen_dart.hdf5 --chunks 1 5 10 \
        --discretisers bins64 bins256 rvq16x2 rvq16x4 rvq64x2
    python scripts/tokenizer_resolution.py datasets/pusht.hdf5 --relative-to 0 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vqbet.data import TrajectoryWindows, load_dataset, split_episodes
from vqbet.policies.acting import to_relative
from vqbet.tokenizers.fit import TokenizerFitConfig
from vqbet.tokenizers.resolution import Discretiser, resolution


def chunks_of(
    data, episodes: np.ndarray, chunk: int, relative_to: list[int], limit: int, seed: int
) -> torch.Tensor:
    """(N, chunk, A) the chunk at every step of `episodes` (at most `limit`, drawn at random), in
    the policy's frame."""
    windows = TrajectoryWindows(data, obs_window=1, action_chunk=chunk, episodes=episodes)
    chunks = to_relative(windows.action_chunks(), windows.anchor_obs(), relative_to)
    if chunks.shape[0] > limit:
        chunks = chunks[np.random.default_rng(seed).choice(chunks.shape[0], limit, replace=False)]
    return torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="demonstrations in any format vqbet reads")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 5, 10], help="chunk lengths")
    parser.add_argument("--discretisers", nargs="+", default=["bins64", "bins256", "rvq16x2", "rvq16x4"])
    parser.add_argument("--relative-to", type=int, nargs="*", default=[], help="task.action_relative_to")
    parser.add_argument("--steps", type=int, default=1500, help="RVQ fitting steps (configs/tokenizer)")
    parser.add_argument("--batch-size", type=int, default=512, help="RVQ fitting batch (configs/tokenizer)")
    parser.add_argument("--max-chunks", type=int, default=100_000, help="fitting chunks drawn at most")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="episodes held out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        discretisers = [Discretiser.parse(s) for s in args.discretisers]
    except ValueError as error:
        parser.error(str(error))
    if min(args.chunks) < 1:
        parser.error(f"--chunks must be >= 1, got {args.chunks}")
    if not 0.0 < args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")

    try:
        data = load_dataset(args.dataset)
    except (OSError, ValueError, KeyError) as error:
        parser.error(str(error))
    if args.relative_to and max(args.relative_to) >= data.obs.shape[1]:
        parser.error(f"--relative-to {args.relative_to}: the observations have {data.obs.shape[1]} values")
    train_eps, val_eps = split_episodes(data.num_episodes, args.val_fraction, seed=args.seed)
    fit = TokenizerFitConfig(steps=args.steps, batch_size=args.batch_size)
    print(
        f"{args.dataset}: {data.num_episodes} episodes ({len(val_eps)} held out), action dim "
        f"{data.action.shape[1]}; torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| chunk | discretiser | bits | variance left on held-out chunks | codes used | fit s |")
    print("|---|---|---|---|---|---|")
    for chunk in args.chunks:
        train = chunks_of(data, train_eps, chunk, args.relative_to, args.max_chunks, args.seed)
        held_out = chunks_of(data, val_eps, chunk, args.relative_to, args.max_chunks, args.seed)
        for d in discretisers:
            start = time.perf_counter()
            r = resolution(d, train, held_out, fit=fit, seed=args.seed)
            seconds = time.perf_counter() - start
            print(
                f"| {chunk} x {data.action.shape[1]} | {d.name} | {r['bits']:.0f} | "
                f"{100 * r['residual']:.1f}% | {100 * r['used']:.0f}% | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
