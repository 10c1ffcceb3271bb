"""Which action tokenizer for my data? Every registered family at a few budgets and chunk lengths,
fitted on most episodes of a dataset and judged on the held-out rest.

    python benchmarks/bench_tokenizers.py datasets/multireach.hdf5          # any load_dataset source
    python benchmarks/bench_tokenizers.py lerobot_folder/ --obs-keys observation.state --chunks 10
    python benchmarks/bench_tokenizers.py datasets/kitchen_dart.hdf5 --quick  # small budgets, a smoke run
    python benchmarks/bench_tokenizers.py datasets/kitchen_dart.hdf5 --chunks 10 --fit-chunks 300000

Per (tokenizer, budget, chunk length T): tokens per chunk (mean, p99), vocabulary, bits per chunk
(tokens x log2 vocabulary), held-out reconstruction (normalised MSE: the squared error over each
action dimension's variance, averaged; worst absolute error of any dimension, raw units), the
excess jump at chunk boundaries when held-out chunks are played back to back (mean |first action
of a chunk - last of the one before| decoded, minus the same in the data, raw units), decode
validity (share of random token sequences, and of encoded sequences with one token replaced, that
decode to a finite chunk of the right shape; FAST counts a sequence that needed its repair rule as
invalid), encode and decode chunks/s at batch 1 and 4096, and fit seconds. Writes tokenizers.md,
tokenizers.json and rate_distortion.png (held-out error against bits per chunk, a line per
tokenizer and chunk length) into --out (default: beside the data, <name>_tokenizers/).
With --fit-chunks N it times instead, for every setting, `fit` and `encode` (blocks of 65,536) on N
chunks of the first chunk length drawn with replacement from the training episodes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqbet.data import load_dataset, split_episodes
from vqbet.tokenizers import TokenizerFitConfig, tokenizer_class

BUDGETS: dict[str, list[dict[str, Any]]] = {
    "rvq": [
        dict(num_layers=2, codebook_size=16),
        dict(num_layers=4, codebook_size=16),
        dict(num_layers=4, codebook_size=256),
    ],
    "fsq": [dict(num_layers=1, fsq_levels=[8, 5, 5, 5]), dict(num_layers=2, fsq_levels=[8, 5, 5, 5])],
    "kmeans": [dict(num_bins=64), dict(num_bins=256)],
    "bins": [dict(num_bins=16), dict(num_bins=256)],
    "fast": [dict(scale=5.0), dict(scale=10.0), dict(scale=20.0)],
}
"""The settings each family is measured at, from fewest bits to most."""
QUICK = {name: budgets[:1] for name, budgets in BUDGETS.items()}


def episode_chunks(
    actions: np.ndarray, ends: np.ndarray, episodes: np.ndarray, t: int, stride: int
) -> np.ndarray:
    """Chunks (N, t, A) starting every `stride` steps inside each of `episodes` (never across an end)."""
    starts = np.concatenate([[0], ends[:-1]])
    out = [actions[s : s + t] for e in episodes for s in range(int(starts[e]), int(ends[e]) - t + 1, stride)]
    if not out:
        raise ValueError(f"no episode is {t} steps long: lower --chunks")
    return np.stack(out).astype(np.float32)


def back_to_back(actions: np.ndarray, ends: np.ndarray, episodes: np.ndarray, t: int) -> np.ndarray:
    """Episodes cut into consecutive chunks (E, K, t, A): those with at least two whole chunks (at
    most 200), each cut to the shortest one's K chunks."""
    starts = np.concatenate([[0], ends[:-1]])
    runs = [
        actions[s : s + (e - s) // t * t].reshape(-1, t, actions.shape[1])
        for s, e in ((int(starts[i]), int(ends[i])) for i in episodes)
    ]
    runs = [r for r in runs if len(r) >= 2][:200]
    if not runs:
        return np.zeros((0, 2, t, actions.shape[1]), dtype=np.float32)
    k = min(len(r) for r in runs)
    return np.stack([r[:k] for r in runs]).astype(np.float32)


def calls_per_second(call, batch: torch.Tensor, seconds: float = 0.3) -> float:
    """Chunks per second of `call(batch)`: the median of repeated calls for about `seconds`."""
    call(batch)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        tick = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - tick)
    return batch.shape[0] / statistics.median(times)


def measure(
    name: str, options: dict[str, Any], train: np.ndarray, held: np.ndarray, played: np.ndarray, steps: int
) -> dict[str, Any]:
    """One row: fit tokenizer `name` with `options` on `train` chunks, judge it on `held` (and on
    the back-to-back chunks `played` (E, K, T, A) of held-out episodes)."""
    t, a = train.shape[1:]
    cls = tokenizer_class(name)
    torch.manual_seed(0)
    tok = cls(action_dim=a, chunk_size=t, **options)
    fit = TokenizerFitConfig(steps=steps, batch_size=512)
    started = time.perf_counter()
    tok.fit(torch.from_numpy(train), seed=0, config=fit, progress=False)
    fit_seconds = time.perf_counter() - started
    tok.eval()
    x = torch.from_numpy(held)
    if cls.variable_length:
        encode = lambda c: tok.encode(c)  # noqa: E731
        decode = lambda e: tok.decode_with_validity(*e)  # noqa: E731
    else:
        encode = tok.encode
        decode = lambda codes: (tok.decode(codes), torch.ones(codes.shape[0], dtype=torch.bool))  # noqa: E731
    with torch.no_grad():
        encoded = encode(x)
        decoded, _ = decode(encoded)
        lengths = (
            encoded[1].float()
            if cls.variable_length
            else torch.full((x.shape[0],), float(tok.tokens_per_chunk))
        )
        error = (decoded - x).square().mean(dim=(0, 1)) / x.var(dim=(0, 1)).clamp_min(1e-12)
        worst = (decoded - x).abs().amax(dim=(0, 1))
        seq = torch.from_numpy(played.reshape(-1, t, a))
        replay = decode(encode(seq))[0].reshape(played.shape)
        jump = lambda c: (c[:, 1:, 0] - c[:, :-1, -1]).abs().mean()  # noqa: E731
        excess_jump = float(jump(replay) - jump(torch.from_numpy(played)))
        validity = decode_validity(tok, encoded, decode)
    vocab = tok.vocab_size
    bits = float(lengths.mean()) * math.log2(vocab)
    batch1, batch4096 = x[:1], x[torch.arange(4096) % x.shape[0]]
    speed = {}
    for n, b in (("1", batch1), ("4096", batch4096)):
        tokens = encode(b)
        speed[f"encode_{n}"] = calls_per_second(encode, b)
        speed[f"decode_{n}"] = calls_per_second(lambda _, tokens=tokens: decode(tokens), b)
    return {
        "tokenizer": name,
        "options": options,
        "chunk": t,
        "tokens_mean": float(lengths.mean()),
        "tokens_p99": float(torch.quantile(lengths, 0.99)),
        "vocab": vocab,
        "bits": bits,
        "nmse": float(error.mean()),
        "worst_abs_per_dim": worst.tolist(),
        "worst_abs": float(worst.max()),
        "excess_jump": excess_jump,
        **validity,
        **speed,
        "fit_seconds": fit_seconds,
    }


def decode_validity(tok, encoded, decode) -> dict[str, float]:
    """Shares of random sequences and of one-token-corrupted encodings that decode to a finite
    chunk of the right shape (and, for FAST, needed no repair)."""
    g = torch.Generator().manual_seed(0)
    tokens = encoded[0] if isinstance(encoded, tuple) else encoded
    n, width = min(1000, tokens.shape[0]), tokens.shape[1]
    shape = (tok.config.chunk_size, tok.config.action_dim)

    def share(candidate) -> float:
        chunks, valid = decode(candidate)
        ok = valid & torch.isfinite(chunks).flatten(1).all(1) & (tuple(chunks.shape[1:]) == shape)
        return float(ok.float().mean())

    random = torch.randint(tok.vocab_size, (n, width), generator=g)
    corrupted = tokens[:n].clone()
    lengths = encoded[1][:n] if isinstance(encoded, tuple) else torch.full((n,), width)
    where = (torch.rand(n, generator=g) * lengths).long()
    corrupted[torch.arange(n), where] = torch.randint(tok.vocab_size, (n,), generator=g)
    if isinstance(encoded, tuple):
        random_lengths = torch.randint(1, width + 1, (n,), generator=g)
        return {
            "valid_random": share((random, random_lengths)),
            "valid_corrupted": share((corrupted, lengths)),
        }
    return {"valid_random": share(random), "valid_corrupted": share(corrupted)}


def time_fit_and_encode(name: str, options: dict[str, Any], chunks: np.ndarray, steps: int) -> str:
    """A table row: seconds to fit tokenizer `name` on `chunks` and to encode them all."""
    torch.manual_seed(0)
    x = torch.from_numpy(chunks)
    tok = tokenizer_class(name)(action_dim=x.shape[2], chunk_size=x.shape[1], **options)
    started = time.perf_counter()
    tok.fit(x, seed=0, config=TokenizerFitConfig(steps=steps, batch_size=512), progress=False)
    fitted = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), 65536):
            tok.encode(x[i : i + 65536])
    done = time.perf_counter()
    setting = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"| {name} | {setting} | {fitted - started:.1f} | {done - fitted:.1f} | {done - started:.1f} |"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| tokenizer | setting | T | tokens mean / p99 | vocab | bits | held-out NMSE | worst abs | "
        "excess jump | valid random / corrupted | encode /s b1 / b4096 | decode /s b1 / b4096 | fit s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        setting = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        cells = [
            r["tokenizer"],
            setting,
            r["chunk"],
            f"{r['tokens_mean']:.1f} / {r['tokens_p99']:.0f}",
            r["vocab"],
            f"{r['bits']:.0f}",
            f"{r['nmse']:.4f}",
            f"{r['worst_abs']:.3f}",
            f"{r['excess_jump']:.4f}",
            f"{100 * r['valid_random']:.0f}% / {100 * r['valid_corrupted']:.0f}%",
            f"{r['encode_1']:,.0f} / {r['encode_4096']:,.0f}",
            f"{r['decode_1']:,.0f} / {r['decode_4096']:,.0f}",
            f"{r['fit_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in sorted({(r["tokenizer"], r["chunk"]) for r in rows}):
        line = sorted((r["bits"], r["nmse"]) for r in rows if (r["tokenizer"], r["chunk"]) == key)
        ax.plot(*zip(*line, strict=True), marker="o", label=f"{key[0]}, T={key[1]}")
    ax.set(xscale="log", yscale="log", xlabel="bits per chunk", ylabel="held-out normalised MSE")
    ax.set_title("rate-distortion of the action tokenizers")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a dataset load_dataset reads (file, folder or Minari id)")
    parser.add_argument("--obs-keys", nargs="*", default=None, help="observation keys (as load_dataset)")
    parser.add_argument("--action-key", default=None, help="action key (as load_dataset)")
    parser.add_argument("--chunks", nargs="+", type=int, default=[5, 10, 20], help="chunk lengths T")
    parser.add_argument("--tokenizers", nargs="+", default=sorted(BUDGETS), help="families to measure")
    parser.add_argument("--held-out", type=float, default=0.2, help="share of episodes held out")
    parser.add_argument("--max-chunks", type=int, default=100_000, help="fit on at most this many chunks")
    parser.add_argument("--steps", type=int, default=1500, help="gradient steps of the rvq and fsq fits")
    parser.add_argument("--quick", action="store_true", help="one budget per family, 100 fit steps")
    parser.add_argument("--fit-chunks", type=int, default=0, help="time fit + encode on this many chunks")
    parser.add_argument(
        "--settings",
        type=json.loads,
        default=None,
        help='settings instead of the built-in ones, as JSON: {"rvq": [{"num_layers": 12}], "bins": [...]}',
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    args = parser.parse_args()
    data = load_dataset(args.source, obs_keys=args.obs_keys, action_key=args.action_key)
    ends = np.asarray(data.episode_ends)
    train_eps, held_eps = split_episodes(data.num_episodes, args.held_out, seed=0)
    budgets = args.settings or (QUICK if args.quick else BUDGETS)
    if args.settings:
        args.tokenizers = [name for name in args.tokenizers if name in args.settings]
    steps = 100 if args.quick else args.steps
    if args.fit_chunks:
        t = args.chunks[0]
        pool = episode_chunks(data.action, ends, train_eps, t, stride=1)
        chunks = pool[np.random.default_rng(0).integers(len(pool), size=args.fit_chunks)]
        print(f"{args.fit_chunks} chunks ({t} x {chunks.shape[2]}) from {len(pool)}, fit and encode:")
        print("| tokenizer | setting | fit s | encode s | total s |\n|---|---|---|---|---|")
        for name in args.tokenizers:
            for options in budgets[name]:
                print(time_fit_and_encode(name, options, chunks, steps), flush=True)
        return
    rows = []
    for t in args.chunks:
        rng = np.random.default_rng(0)
        train = episode_chunks(data.action, ends, train_eps, t, stride=1)
        train = train[rng.permutation(len(train))[: args.max_chunks]]
        held = episode_chunks(data.action, ends, held_eps, t, stride=1)
        played = back_to_back(data.action, ends, held_eps, t)
        for name in args.tokenizers:
            for options in budgets[name]:
                row = measure(name, options, train, held, played, steps)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    out = args.out or Path(str(args.source).rstrip("/")).with_suffix("").with_name(
        Path(str(args.source).rstrip("/")).stem + "_tokenizers"
    )
    out.mkdir(parents=True, exist_ok=True)
    text = (
        f"# Action tokenizers on {args.source}\n\n{data.num_episodes} episodes, {len(held_eps)} held out; "
        f"fitted on at most {args.max_chunks} chunks; rvq/fsq {steps} steps.\n\n{table(rows)}\n"
    )
    (out / "tokenizers.md").write_text(text)
    (out / "tokenizers.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "rate_distortion.png")
    print(f"\n{table(rows)}\n\nwritten: {out}/tokenizers.md, tokenizers.json, rate_distortion.png")


if __name__ == "__main__":
    main()
