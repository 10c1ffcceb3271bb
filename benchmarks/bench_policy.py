"""Policy benchmark: training samples/s, select_action latency, data loading share, evaluation
throughput against raw env stepping.

    python benchmarks/bench_policy.py              # ~4 minutes on 2 CPU cores
    python benchmarks/bench_policy.py --only-eval --profile 12   # evaluation rows and profiler tables
    python benchmarks/bench_policy.py --only-pixels  # the image pipeline and the allocator setting
    python benchmarks/bench_policy.py --official ../vq_bet_official  # + the official VQ-BeT, same run
    python benchmarks/bench_policy.py --baseline /tmp/vqbet-before [--only-baseline]  # + an earlier commit
        (git worktree add /tmp/vqbet-before <commit>), same run

Configs: our default (configs/policy/vqbet.yaml on MultiReach) and VQ-BeT's Kitchen config at its
shape (obs 60, action 9, GPT 6 layers, 6 heads, n_embd 120, To 10, K 16, L 2, heads 1024 wide),
measured in the same run; training in float32 and in bf16 autocast (train.amp) in alternating pairs.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from harness import (
    ALLOCATOR,
    CONFIGS,
    OBS_DIM,
    act_latency_ms,
    allocator_speedup,
    alternating_pairs,
    amp_speedup,
    attention_speedup,
    call_ms,
    checkout_samples_per_s,
    image_pipeline_ms,
    make_policy,
    matmul_share,
    official_samples_per_s,
    random_batch,
    train_samples_per_s,
)

from vqbet.nn.optim import adamw
from vqbet.runtime import retain_freed_memory
from vqbet.training.device import compile_network, native_bf16


def data_loading_share(batch: int, steps: int) -> tuple[float, float]:
    """(ms per batch from a DataLoader over TrajectoryWindows of MultiReach demonstrations,
    ms per default training step) measured back to back."""
    from vqbet.data import EpisodeData, TrajectoryWindows

    rng = np.random.default_rng(0)
    episodes = [
        {
            "obs": rng.normal(size=(90, OBS_DIM)).astype(np.float32),
            "action": rng.normal(size=(90, 2)).astype(np.float32),
        }
        for _ in range(1000)
    ]
    windows = TrajectoryWindows(EpisodeData.from_episodes(episodes), obs_window=5, action_chunk=5)
    loader = torch.utils.data.DataLoader(windows, batch_size=batch, shuffle=True)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    load_ms = 1000 * (time.perf_counter() - start) / steps
    policy = make_policy(next(iter(CONFIGS)))
    train_ms = 1000 * batch / train_samples_per_s(policy, batch, steps, torch.device("cpu"))
    return load_ms, train_ms


class StaggeredEnvs:
    """make_env for evaluate(): MultiReach envs whose time limits differ, so that episodes end at
    different steps and the policy's chunk queues fall out of step, as with a trained policy."""

    limits = (200, 170, 140, 185, 155, 125)

    def __init__(self, staggered: bool) -> None:
        self.staggered, self.count = staggered, 0

    def __call__(self):
        import gymnasium as gym

        import envs  # noqa: F401

        limit = self.limits[self.count % len(self.limits)] if self.staggered else 200
        self.count += 1
        return gym.make("vqbet/MultiReach-v0", max_episode_steps=limit, disable_env_checker=True)


def eval_throughput(
    num_envs: int, staggered: bool, episodes: int, repeats: int = 3
) -> tuple[float, float, float]:
    """(env steps/s of evaluate() with the default policy, env steps/s of raw stepping of the same
    SyncVectorEnv with random actions for as many steps, their ratio): medians over `repeats` pairs
    measured back to back, since this VM's speed drifts by tens of percent from minute to minute."""
    import gymnasium as gym

    from vqbet.evaluation.rollouts import evaluate

    policy = make_policy(next(iter(CONFIGS))).eval()
    make_env = StaggeredEnvs(staggered)
    vec = gym.vector.SyncVectorEnv([make_env for _ in range(num_envs)])
    vec.reset(seed=0)
    rates, raws, ratios = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate(policy, StaggeredEnvs(staggered), episodes, 0, num_envs=num_envs, progress=False)
        steps = sum(e["length"] for e in result["episodes"])
        rates.append(steps / (time.perf_counter() - start))
        n = max(1, steps // num_envs)
        actions = np.random.default_rng(0).uniform(-1, 1, (n, num_envs, 2)).astype(np.float32)
        start = time.perf_counter()
        for a in actions:
            vec.step(a)
        raws.append(n * num_envs / (time.perf_counter() - start))
        ratios.append(rates[-1] / raws[-1])
    vec.close()
    return statistics.median(rates), statistics.median(raws), statistics.median(ratios)


def profile_tables(rows: int) -> None:
    """torch.profiler tables (self CPU time) of a default-config training step and of evaluate()."""
    from torch.profiler import ProfilerActivity, profile

    from vqbet.evaluation.rollouts import evaluate

    policy = make_policy(next(iter(CONFIGS)))
    train_samples_per_s(policy, 256, 3, torch.device("cpu"))  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_samples_per_s(policy, 256, 5, torch.device("cpu"))
    print("\ntraining step (5 steps, batch 256), top ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    policy.eval()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        evaluate(policy, StaggeredEnvs(True), 20, seed=0, num_envs=10, progress=False)
    print("evaluate() (20 episodes, 10 envs, staggered), top ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def _ddp_worker(rank: int, world: int, port: int, steps: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    policy = make_policy(next(iter(CONFIGS))).train()
    model = DistributedDataParallel(policy)
    data = random_batch(policy, 256 // world, torch.device("cpu"))
    optimizer = adamw(policy, 1e-4, 0.01)
    for i in range(steps + 3):
        if i == 3:
            dist.barrier()
            start = time.perf_counter()
        loss, _ = model(data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if rank == 0:
        Path(out).write_text(str(256 * steps / (time.perf_counter() - start)))
    dist.destroy_process_group()


def ddp_samples_per_s(steps: int) -> float:
    """Global samples/s of 2 gloo processes (1 thread each) on a global batch of 256."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/sps"
        mp.spawn(_ddp_worker, args=(2, port, steps, out), nprocs=2, join=True)
        return float(Path(out).read_text())


def model_rows(steps: int, device: torch.device, compiled: bool) -> None:
    print(
        "| config | params | train samples/s (batch 256) "
        "| select_action ms, batch 1 (model call / queue avg) "
        "| select_action ms, batch 64 (model call / queue avg) |"
    )
    print("|---|---|---|---|---|")
    variants = [(name, False) for name in CONFIGS] + ([(next(iter(CONFIGS)), True)] if compiled else [])
    for name, compile_it in variants:
        torch.manual_seed(0)
        policy = make_policy(name)
        if compile_it:
            compile_network(policy)
        params = sum(p.numel() for p in policy.parameters())
        sps = train_samples_per_s(policy, 256, steps, device)
        b1 = act_latency_ms(policy, 1, 300, device)
        b64 = act_latency_ms(policy, 64, 100, device)
        label = f"{name}, torch.compile" if compile_it else name
        print(
            f"| {label} | {params:,} | {sps:,.0f} "
            f"| {b1[0]:.2f} / {b1[1]:.2f} | {b64[0]:.2f} / {b64[1]:.2f} |",
            flush=True,
        )


def precision_rows(steps: int, device: torch.device, official: str | None) -> None:
    """float32 vs bf16 autocast training (train.amp), alternating pairs, at both shapes; at the
    Kitchen shape also bf16 against the official VQ-BeT (`official`: its checkout) in pairs."""
    if not native_bf16(device):
        print("\nprecision: this CPU has no native bf16 (AVX512-BF16 or AMX), train.amp trains in float32")
    print(
        "\n| training precision, batch 256 | float32 samples/s | bf16 autocast samples/s "
        "| bf16 / float32 (median of 3 pairs) | matmul share of a bf16 step "
        "| explicit attention / SDPA, float32 / bf16 (median of 3 pairs) |"
    )
    print("|---|---|---|---|---|---|")
    for name in CONFIGS:
        fp32, bf16, ratio = amp_speedup(name, 256, steps, device)
        share = matmul_share(name, 256, max(3, steps // 5))
        attention = [attention_speedup(name, 256, steps, device, amp)[2] for amp in (False, True)]
        print(
            f"| {name} | {fp32:,.0f} | {bf16:,.0f} | {ratio:.2f}x | {100 * share:.0f}% "
            f"| {attention[0]:.2f}x / {attention[1]:.2f}x |",
            flush=True,
        )
    kitchen = next(name for name in CONFIGS if "Kitchen" in name)
    if official is None:
        print(
            "(official VQ-BeT at the Kitchen shape: not measured in this run; give --official DIR, a "
            "checkout of jayLEE0301/vq_bet_official)"
        )
        return

    def ours() -> float:
        torch.manual_seed(0)
        return train_samples_per_s(make_policy(kitchen), 256, steps, device, amp=True)

    theirs, mine, ratio = alternating_pairs(
        lambda: official_samples_per_s(official, 256, steps, torch.get_num_threads()), ours, pairs=3
    )
    print(
        f"\n| Kitchen shape, batch 256, this run | official VQ-BeT samples/s | ours (bf16) samples/s "
        f"| ours / official (median of 3 pairs) |\n|---|---|---|---|\n| {kitchen} | {theirs:,.0f} "
        f"| {mine:,.0f} | {ratio:.2f}x |",
        flush=True,
    )


def baseline_rows(baseline: str, steps: int) -> None:
    """Our training step against an earlier checkout of this repository (`baseline`), each in a
    process of its own, in alternating pairs. The default config at each side's main-job precision
    (the earlier code trained float32 on CPU unless its train.amp covered the CPU), both in float32
    and both in bf16 (the code alone); the Kitchen shape both in bf16 where the checkout has it."""
    import subprocess

    here = Path(__file__).resolve().parents[1]
    threads = torch.get_num_threads()
    commit = subprocess.run(
        ["git", "-C", baseline, "log", "-1", "--format=%h %cs"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\n| batch 256, this run | baseline {baseline} ({commit or 'not a git checkout'}) "
        "samples/s | ours samples/s | ours / baseline (median of 3 pairs) |\n|---|---|---|---|"
    )
    ours_amp = native_bf16(torch.device("cpu"))
    for label, config, theirs_amp, mine_amp in (
        (
            f"default, main job (baseline float32, ours {'bf16' if ours_amp else 'float32'})",
            "default",
            False,
            ours_amp,
        ),
        ("default, both float32", "default", False, False),
        ("default, both bf16 autocast", "default", True, True),
        ("Kitchen shape, both bf16 autocast", "VQ-BeT Kitchen", True, True),
    ):
        try:
            theirs, mine, ratio = alternating_pairs(
                lambda c=config, a=theirs_amp: checkout_samples_per_s(baseline, 256, steps, threads, a, c),
                lambda c=config, a=mine_amp: checkout_samples_per_s(here, 256, steps, threads, a, c),
                pairs=3,
            )
        except RuntimeError as error:  # an older checkout without this config
            print(f"| {label} | - | - | not measured: {str(error).strip().splitlines()[-1]} |", flush=True)
            continue
        print(f"| {label} | {theirs:,.0f} | {mine:,.0f} | {ratio:.2f}x |", flush=True)


def export_rows(calls: int = 200) -> None:
    """Model call at batch 1 and 64: the eager policy vs its exported program and its AOTInductor
    package, each in alternating pairs with the eager call."""
    import tempfile

    from vqbet.policies.export import ExportedPolicy

    print(
        "\n| config | batch | eager predict_action_chunk ms | exported program ms (/ eager) "
        "| compiled package ms (/ eager) |"
    )
    print("|---|---|---|---|---|")
    for name in CONFIGS:
        torch.manual_seed(0)
        policy = make_policy(name).eval()
        c = policy.config
        with tempfile.TemporaryDirectory() as tmp:
            exported = ExportedPolicy.load(policy.export(f"{tmp}/program")).predict_action_chunk
            compiled = ExportedPolicy.load(
                policy.export(f"{tmp}/package", compiled=True)
            ).predict_action_chunk
            eager = policy.predict_action_chunk
            for batch in (1, 64):
                obs = torch.randn(batch, c.obs_window, c.obs_dim)

                def pairs(other, o=obs, e=eager):
                    return alternating_pairs(
                        lambda: call_ms(e, o, calls), lambda: call_ms(other, o, calls), 3
                    )

                _, program_ms, program = pairs(exported)
                eager_ms, package_ms, package = pairs(compiled)
                print(
                    f"| {name} | {batch} | {eager_ms:.2f} | {program_ms:.2f} ({program:.2f}) "
                    f"| {package_ms:.2f} ({package:.2f}) |",
                    flush=True,
                )


def pixel_rows(steps: int) -> None:
    """Where a pixel policy's training step goes (issue: image pipeline vs network), for 84 x 84
    crops at batch 64 and for the recipe of configs/task/pusht_pixels.yaml."""
    from omegaconf import OmegaConf

    task = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "task" / "pusht_pixels.yaml")
    recipe = (int(task.batch_size), int(task.obs_window), int(task.vision.downsample))
    print(
        "\n| PushT from pixels (1 camera 96x96, crop 84x84, conv encoder), single-process loader, bf16 "
        "| read + decode frames ms | crop + normalise (+ pool) ms | training step ms (incl. crop) "
        "| loader frames/s | samples/s (load + step) |"
    )
    print("|---|---|---|---|---|---|")
    for batch, window, downsample in ((64, 5, 1), recipe):
        m = image_pipeline_ms(batch, max(3, steps // 3), obs_window=window, downsample=downsample)
        label = f"batch {batch}, To {window}, encoded at {84 // downsample}x{84 // downsample}"
        label += " (task recipe)" if (batch, window, downsample) == recipe else ""
        print(
            f"| {label} | {m['load_ms']:.1f} | {m['crop_ms']:.1f} | {m['step_ms']:.1f} "
            f"| {m['loader_frames_per_s']:,.0f} | {m['samples_per_s']:,.0f} |",
            flush=True,
        )
    if sys.platform.startswith("linux"):
        default, retained, ratio = allocator_speedup(*recipe, max(3, steps // 3), torch.get_num_threads())
        print(
            f"task recipe, glibc's allocator defaults vs freed memory retained (vqbet.runtime, what "
            f"scripts/train.py sets): {default:,.0f} vs {retained:,.0f} samples/s, **{ratio:.2f}x** "
            "(separate processes, median of 3 alternating pairs)"
        )


def loading_and_ddp_rows(steps: int, device: torch.device) -> None:
    load_ms, train_ms = data_loading_share(256, steps)
    print(
        f"\ndata loading: {load_ms:.1f} ms per batch of 256 windows vs {train_ms:.1f} ms per training step "
        f"= {100 * load_ms / (load_ms + train_ms):.0f}% of a step (single-process loader)"
    )
    single = train_samples_per_s(make_policy(next(iter(CONFIGS))), 256, steps, device)
    ddp = ddp_samples_per_s(steps)
    print(
        f"DDP, default config, global batch 256: 2 gloo processes x 1 thread {ddp:,.0f} samples/s vs "
        f"1 process x 2 threads {single:,.0f} ({ddp / single:.2f}x)"
    )


def eval_rows() -> None:
    print(
        "\n| evaluation: envs | episode ends | with policy, steps/s | raw stepping, steps/s "
        "| ratio (median of 3) |"
    )
    print("|---|---|---|---|---|")
    for num_envs in (10, 50):
        for staggered in (False, True):
            with_policy, raw, ratio = eval_throughput(num_envs, staggered, episodes=4 * num_envs)
            print(
                f"| {num_envs} | {'staggered' if staggered else 'together'} | {with_policy:,.0f} "
                f"| {raw:,.0f} | {100 * ratio:.0f}% |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only-eval", action="store_true", help="only the evaluation-throughput rows")
    parser.add_argument("--no-eval", action="store_true", help="leave out the evaluation-throughput rows")
    parser.add_argument("--only-baseline", action="store_true", help="only the --baseline rows")
    parser.add_argument("--only-pixels", action="store_true", help="only the pixel-pipeline rows")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow to compile)")
    parser.add_argument("--profile", type=int, default=0, help="print profiler tables with this many rows")
    parser.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="leave the C allocator as it is (default: freed memory retained, as scripts/train.py sets)",
    )
    parser.add_argument(
        "--official",
        metavar="DIR",
        help="a checkout of jayLEE0301/vq_bet_official: measure it at the Kitchen shape in this run",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="an earlier checkout of this repository (git worktree add DIR <commit>): its training "
        "steps (default config; Kitchen shape where it has it) against ours in this run",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    allocator = "glibc defaults" if args.glibc_defaults or not retain_freed_memory() else ALLOCATOR
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, allocator: {allocator}\n")
    if args.only_baseline:
        if not args.baseline:
            parser.error("--only-baseline needs --baseline DIR")
        baseline_rows(args.baseline, args.steps)
        return
    if args.only_pixels:
        pixel_rows(args.steps)
        return
    if not args.only_eval:
        model_rows(args.steps, device, args.compile)
        precision_rows(args.steps, device, args.official)
        if args.baseline:
            baseline_rows(args.baseline, args.steps)
        export_rows()
        pixel_rows(args.steps)
        loading_and_ddp_rows(args.steps, device)
    if not args.no_eval:
        eval_rows()
    if args.profile:
        profile_tables(args.profile)


if __name__ == "__main__":
    main()
