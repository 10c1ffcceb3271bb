"""Tokenizer benchmark: speed against vector-quantize-pytorch, and codebook quality per remedy.

    python benchmarks/bench_tokenizer.py            # both tables (a few minutes on 2 cores)
    python benchmarks/bench_tokenizer.py --quick    # smaller sizes, for a smoke run
    python benchmarks/bench_tokenizer.py --skip-quality --sizes small   # the K 16 speed rows only

Table 1 runs our ResidualVQ and vector-quantize-pytorch's ResidualVQ in the same process on the same
inputs and codebooks, forward only (no autograd), with `--threads` threads, in alternating pairs of
blocks (each opens with untimed calls for at least 10 ms, then times three): vectors/s are
medians, the ratio is the median of the per-pair ratios. GFLOP/s counts the distance work,
2*K*dim*L per vector, against a float32 matmul of the same (N, dim) x (dim, K) shape measured in
the same run. The C allocator keeps glibc's defaults, as in a project that imports the
tokenizer; `--retain-freed-memory` measures under scripts/train.py's setting instead (it speeds
up vector-quantize-pytorch's many large temporaries more than ours).
Table 2 fits ActionTokenizers with each collapse remedy on multimodal 2-D action chunks and reports
held-out reconstruction error and per-layer codebook usage.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from harness import ALLOCATOR, alternating_pairs

from vqbet import ActionTokenizer, TokenizerFitConfig, fit_tokenizer
from vqbet.quantize import ResidualVQ
from vqbet.runtime import retain_freed_memory


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SETTLE_SECONDS = 0.01
"""Untimed calls that open each block of `paired_seconds`, at least this long."""


def paired_seconds(ours, ref, pairs: int, calls: int = 3) -> tuple[float, float, float]:
    """(median s per call of `ours`, of `ref`, median of the per-pair ratios ref / ours): the two
    run in alternating blocks of `calls` timed calls, so that each pair sees the same machine speed
    (this VM drifts by 20-30% from minute to minute, which made separate medians disagree between
    runs). Each block opens with untimed calls for at least SETTLE_SECONDS: on this VM a call
    right after switching libraries runs slow, and the next ones recover over several
    milliseconds whichever library made them (a K 16 training call of ours, median by position
    after eight vector-quantize-pytorch calls: 1.16, 0.87, 0.83, 0.80 ms, ..., 0.69 ms from the
    tenth call on; also 0.9 ms after a 6 ms sleep), a cost of the alternation that counted
    against the shorter call (with one untimed call, ours was timed in calls 2-4)."""
    ours(), ref()  # warm-up

    def block(fn) -> float:
        settled = time.perf_counter() + SETTLE_SECONDS
        fn()
        while time.perf_counter() < settled:
            fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return alternating_pairs(lambda: block(ours), lambda: block(ref), pairs)


def copy_codebooks(ours: ResidualVQ, ref) -> None:
    with torch.no_grad():
        for layer, ref_layer in zip(ours.layers, ref.layers, strict=True):
            ref_layer._codebook.embed[0].copy_(layer.codebook)
            ref_layer._codebook.embed_avg[0].copy_(layer.codebook)
            ref_layer._codebook.cluster_size.fill_(1.0)
            ref_layer._codebook.initted.fill_(True)


SPEED_CONFIGS = {"small": [(64, 16, 2)], "large": [(256, 1024, 8)]}
"""(dim, K, L) of the speed table's rows, by size."""


def speed_table(batches: list[int], repeats: int, sizes: tuple[str, ...] = ("small", "large")) -> None:
    from vector_quantize_pytorch import ResidualVQ as RefResidualVQ

    print("\nTable 1: speed, vectors/s (median), ours vs vector-quantize-pytorch ResidualVQ (paired)")
    header = (
        "| dim | K | L | batch | mode | ours vec/s | vqp vec/s | ratio | ours GFLOP/s "
        "| matmul GFLOP/s | % of matmul |"
    )
    print(header)
    print("|---" * 11 + "|")
    for dim, k, layers in [config for size in sizes for config in SPEED_CONFIGS[size]]:
        torch.manual_seed(0)
        ours = ResidualVQ(dim=dim, codebook_size=k, num_layers=layers, ema=True, decay=0.99)
        ref = RefResidualVQ(dim=dim, codebook_size=k, num_quantizers=layers, decay=0.99)
        for batch in batches:
            x = torch.randn(batch, dim)
            codebook = torch.randn(k, dim)
            mm = median_seconds(lambda x=x, codebook=codebook: x @ codebook.t(), repeats)
            roof = 2 * batch * dim * k / mm / 1e9
            reps = 2 * repeats + 1 if dim * k * batch < 1 << 28 else max(3, repeats // 3)
            for mode in ("eval", "train"):
                ours.train(mode == "train")
                ref.train(mode == "train")
                snapshot = {key: v.clone() for key, v in ours.state_dict().items()}
                with torch.no_grad():
                    ours.load_state_dict(snapshot)
                    copy_codebooks(ours, ref)
                    t_ours, t_ref, ratio = paired_seconds(
                        lambda x=x, m=ours: m(x), lambda x=x, m=ref: m(x), reps
                    )
                    ours.load_state_dict(snapshot)
                gflops = 2 * k * dim * layers * batch / t_ours / 1e9
                print(
                    f"| {dim} | {k} | {layers} | {batch} | {mode} | {batch / t_ours:,.0f} "
                    f"| {batch / t_ref:,.0f} | {ratio:.2f} | {gflops:.1f} | {roof:.1f} "
                    f"| {100 * gflops / roof:.0f}% |",
                    flush=True,
                )


def trajectory_chunks(n: int, chunk: int, seed: int) -> torch.Tensor:
    """Eight families of smooth 2-D strokes (straight, left and right arcs in 8 headings, varied
    speed and noise): (n, chunk, 2) action chunks of velocities."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, chunk)
    family = torch.randint(8, (n,), generator=g)
    heading = family * (2 * math.pi / 8) + 0.15 * torch.randn(n, generator=g)
    turn = (torch.randint(3, (n,), generator=g) - 1) * 1.5 + 0.2 * torch.randn(n, generator=g)
    speed = 1.0 + 0.3 * torch.rand(n, generator=g)
    angle = heading[:, None] + turn[:, None] * t
    vel = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * speed[:, None, None]
    return vel + 0.02 * torch.randn(vel.shape, generator=g)


VARIANTS = {
    "plain VQ (no remedies)": dict(ema=False, kmeans_init=False, dead_code_threshold=0.0),
    "EMA": dict(ema=True, kmeans_init=False, dead_code_threshold=0.0),
    "EMA + k-means + dead-code reset": dict(ema=True, kmeans_init=True, dead_code_threshold=1.0),
    "rotation trick": dict(ema=False, kmeans_init=False, dead_code_threshold=0.0, gradient="rotation"),
    "rotation + k-means + reset": dict(
        ema=False, kmeans_init=True, dead_code_threshold=1.0, gradient="rotation"
    ),
    "Gumbel-softmax (annealed)": dict(
        ema=False, kmeans_init=False, dead_code_threshold=0.0, gradient="gumbel"
    ),
    "FSQ [4, 4, 4]": dict(quantizer="fsq", fsq_levels=[4, 4, 4]),
}


def quality_table(steps: int, codebook_size: int) -> None:
    chunk = 8
    train = trajectory_chunks(20000, chunk, seed=0)
    held_out = trajectory_chunks(4096, chunk, seed=1)
    print(
        f"\nTable 2: quality, 2-D trajectory chunks ({chunk} x 2), L=2, K={codebook_size}, "
        f"{steps} steps; held-out reconstruction MSE (normalised units) and per-layer usage"
    )
    print("| variant | recon MSE | codes used, layer 1 / 2 | perplexity, layer 1 / 2 | fit s |")
    print("|---|---|---|---|---|")
    for name, options in VARIANTS.items():
        torch.manual_seed(0)
        tok = ActionTokenizer(
            action_dim=2, chunk_size=chunk, num_layers=2, codebook_size=codebook_size, **options
        )
        start = time.perf_counter()
        fit_tokenizer(tok, train, TokenizerFitConfig(steps=steps, batch_size=256), progress=False)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            out = tok(held_out)
        target = tok.normalizer.normalize(held_out)
        mse = (tok.normalizer.normalize(out.reconstruction) - target).square().mean().item()
        used = " / ".join(f"{100 * u:.0f}%" for u in out.usage.used_fraction.tolist())
        ppl = " / ".join(f"{p:.1f}" for p in out.usage.perplexity.tolist())
        print(f"| {name} | {mse:.4f} | {used} | {ppl} | {seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--sizes",
        nargs="+",
        choices=sorted(SPEED_CONFIGS),
        default=["small", "large"],
        help="speed-table rows: small (K 16, ~1 min) and/or large (K 1024, ~4 min)",
    )
    parser.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="retain freed memory in the C allocator as scripts/train.py does (default: glibc's "
        "defaults, what a project that imports the tokenizer runs with)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = ALLOCATOR if args.retain_freed_memory and retain_freed_memory() else "glibc defaults"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, allocator: {allocator}")
    if not args.skip_speed:
        speed_table([1024] if args.quick else [4096, 65536], 3 if args.quick else 7, tuple(args.sizes))
    if not args.skip_quality:
        quality_table(steps=100 if args.quick else 2000, codebook_size=64)


if __name__ == "__main__":
    main()
