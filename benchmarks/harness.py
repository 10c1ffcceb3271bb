"""Measurement helpers shared by benchmarks/bench_policy.py and benchmarks/check_cuda.py: the benchmarked
policy configs on random data of the right shapes, training samples/s and acting latency."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vqbet.nn.gpt import CausalSelfAttention
from vqbet.nn.optim import adamw
from vqbet.policies import VQBeTConfig, VQBeTPolicy
from vqbet.tokenizers.rvq import ActionTokenizer
from vqbet.training.device import training_autocast

OBS_DIM, ACTION_DIM = 6, 2
"""MultiReach's observation and action sizes, those of the default config."""
ALLOCATOR = "freed memory retained (vqbet.runtime.retain_freed_memory, as scripts/train.py sets)"
"""The allocator setting benchmarks/bench_policy.py measures under unless given --glibc-defaults (and
benchmarks/bench_tokenizer.py when given --retain-freed-memory); the other side of a comparison run in
a process of its own (the official VQ-BeT, an earlier checkout) keeps glibc's defaults, as its own
scripts do."""

CONFIGS = {
    "default (4x4x128, To 5, Ta 5)": dict(
        dims=(OBS_DIM, ACTION_DIM),
        policy=dict(obs_window=5, action_chunk=5),
        tokenizer=dict(chunk_size=5, num_layers=2, codebook_size=16),
    ),
    # The official VQ-BeT's Kitchen config: its joint code head (sequentially_select: false).
    "VQ-BeT Kitchen (obs 60, action 9, 6x6x120, To 10, Ta 1)": dict(
        dims=(60, 9),
        policy=dict(
            obs_window=10,
            action_chunk=1,
            n_layer=6,
            n_head=6,
            n_embd=120,
            head_hidden=1024,
            dropout=0.1,
            sequential_codes=False,
        ),
        tokenizer=dict(chunk_size=1, num_layers=2, codebook_size=16),
    ),
}


def make_policy(name: str) -> VQBeTPolicy:
    """The benchmarked VQ-BeT policy `name` of CONFIGS, normalisers fitted on random data."""
    spec = CONFIGS[name]
    obs_dim, action_dim = spec["dims"]
    tokenizer = ActionTokenizer(action_dim=action_dim, **spec["tokenizer"])
    tokenizer.normalizer.fit(torch.randn(1000, action_dim))
    policy = VQBeTPolicy(VQBeTConfig(obs_dim=obs_dim, action_dim=action_dim, **spec["policy"]), tokenizer)
    policy.obs_normalizer.fit(torch.randn(1000, obs_dim))
    policy.freeze_statistics()
    return policy


def random_batch(policy: VQBeTPolicy, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    c = policy.config
    return {
        "obs": torch.randn(batch, c.obs_window, c.obs_dim, device=device),
        "action": torch.randn(batch, c.obs_window, c.action_chunk, c.action_dim, device=device),
    }


def training_step(policy: VQBeTPolicy, data: dict, device: torch.device, amp: bool) -> Callable[[], None]:
    """One forward + backward + AdamW step of `policy` on the fixed batch `data`, as a function."""
    policy.to(device).train()
    optimizer = adamw(policy, 1e-4, 0.01)
    autocast = training_autocast(device, amp)

    def step() -> None:
        with autocast:
            loss, _ = policy(data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_samples_per_s(
    policy: VQBeTPolicy, batch: int, steps: int, device: torch.device, amp: bool = False
) -> float:
    """Forward + backward + AdamW step on a fixed batch; samples (windows) per second."""
    step = training_step(policy, random_batch(policy, batch, device), device, amp)
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def _samples_per_s_in_process(
    command: list[str], first: list[Path], what: str, cwd: str | os.PathLike | None = None
) -> float:
    """Run `command` (in `cwd`) with the folders `first` first on PYTHONPATH and return the number
    it prints after `samples_per_s ` (the last such line)."""
    import subprocess

    paths = [*(str(p.resolve()) for p in first), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd)
    lines = [line for line in out.stdout.splitlines() if line.startswith("samples_per_s ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the {what} benchmark failed:\n{out.stderr[-2000:]}")
    return float(lines[-1].split()[1])


def official_samples_per_s(repo: str | os.PathLike, batch: int, steps: int, threads: int) -> float:
    """Training samples/s of the official VQ-BeT at its Kitchen config (benchmarks/official.py),
    in a process of its own with the checkout `repo` on PYTHONPATH."""
    import sys

    if not (Path(repo) / "vq_behavior_transformer" / "bet.py").is_file():
        raise FileNotFoundError(
            f"{repo} is not a checkout of jayLEE0301/vq_bet_official (no vq_behavior_transformer/bet.py)"
        )
    script = str(Path(__file__).with_name("official.py"))
    command = [sys.executable, script, f"--batch={batch}", f"--steps={steps}", f"--threads={threads}"]
    return _samples_per_s_in_process(command, [Path(repo)], "official VQ-BeT")


# Runs inside a checkout of this repository, of any commit since the benchmark had its "default"
# config, `make_policy` and `train_samples_per_s(policy, batch, steps, device, amp=...)`: in
# benchmarks/harness.py, or in vqbet/benchmark.py in checkouts older than the benchmarks/ folder.
_CHECKOUT_BENCHMARK = """
import sys
from pathlib import Path
import torch
import vqbet
try:
    import harness as benchmark
except ImportError:
    from vqbet import benchmark
repo, prefix = Path(sys.argv[1]).resolve(), sys.argv[2]
threads, batch, steps, amp = map(int, sys.argv[3:])
for module in (vqbet, benchmark):
    if repo not in Path(module.__file__).resolve().parents:
        sys.exit(f"{module.__name__} was imported from {module.__file__}, not from the checkout {repo}")
torch.set_num_threads(threads)
torch.manual_seed(0)
name = next((n for n in benchmark.CONFIGS if n.startswith(prefix)), None)
if name is None:
    sys.exit(f"the checkout {repo} has no benchmark config {prefix!r}...: {list(benchmark.CONFIGS)}")
policy = benchmark.make_policy(name)
speed = benchmark.train_samples_per_s(policy, batch, steps, torch.device("cpu"), amp=bool(amp))
print("samples_per_s", speed)
"""


def checkout_samples_per_s(
    repo: str | os.PathLike, batch: int, steps: int, threads: int, amp: bool, config: str = "default"
) -> float:
    """Training samples/s of the config of CONFIGS whose name starts with `config` in the vqbet
    checkout `repo` (this one, or an earlier commit: `git worktree add /tmp/vqbet-before <commit>`),
    in a process of its own with `repo` first on PYTHONPATH; float32, or bf16 autocast with `amp`."""
    import sys

    repo = Path(repo)
    if not any((repo / f).is_file() for f in ("benchmarks/harness.py", "vqbet/benchmark.py")):
        raise FileNotFoundError(
            f"{repo} is not a checkout of vqbet with a benchmark (no benchmarks/harness.py or "
            "vqbet/benchmark.py)"
        )
    command = [
        sys.executable,
        "-c",
        _CHECKOUT_BENCHMARK,
        str(repo),
        config,
        str(threads),
        str(batch),
        str(steps),
    ]
    # In `repo`: `python -c` puts the working folder first on sys.path, before PYTHONPATH.
    first = [repo, repo / "benchmarks"]
    return _samples_per_s_in_process([*command, str(int(amp))], first, f"vqbet checkout {repo}", cwd=repo)


def alternating_pairs(
    first: Callable[[], float], second: Callable[[], float], pairs: int
) -> tuple[float, float, float]:
    """(median of `first()`, median of `second()`, median of the per-pair ratios second / first),
    the two measured in alternation: this VM's speed drifts by tens of percent between minutes, and
    both sides of a pair see the same drift."""
    a, b = [], []
    for _ in range(pairs):
        a.append(first())
        b.append(second())
    ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
    return statistics.median(a), statistics.median(b), ratio


def amp_speedup(name: str, batch: int, steps: int, device: torch.device, pairs: int = 3) -> tuple:
    """(float32 samples/s, bf16-autocast samples/s, speed-up) of config `name`, in alternating
    pairs."""

    def samples_per_s(amp: bool) -> float:
        torch.manual_seed(0)
        return train_samples_per_s(make_policy(name), batch, steps, device, amp=amp)

    return alternating_pairs(lambda: samples_per_s(False), lambda: samples_per_s(True), pairs)


def attention_speedup(
    name: str, batch: int, steps: int, device: torch.device, amp: bool, pairs: int = 3
) -> tuple:
    """(SDPA samples/s, explicit-attention samples/s, speed-up) of training config `name` (bf16
    autocast with `amp`) in alternating pairs, in this process: the CPU training attention of
    vqbet.nn.gpt against scaled_dot_product_attention, everything else the same."""

    explicit = CausalSelfAttention._explicit_attention

    def fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)

    def samples_per_s(use_explicit: bool) -> float:
        # The A side swaps the CPU training attention for SDPA in this process only.
        CausalSelfAttention._explicit_attention = explicit if use_explicit else fused
        try:
            torch.manual_seed(0)
            return train_samples_per_s(make_policy(name), batch, steps, device, amp=amp)
        finally:
            CausalSelfAttention._explicit_attention = explicit

    return alternating_pairs(lambda: samples_per_s(False), lambda: samples_per_s(True), pairs)


_PIXEL_STEP = """
import sys
import torch
from harness import image_pipeline_ms
from vqbet.runtime import retain_freed_memory
retain, threads, batch, window, downsample, steps = map(int, sys.argv[1:])
if retain and not retain_freed_memory():
    sys.exit("retain_freed_memory: not glibc, nothing to compare")
torch.set_num_threads(threads)
torch.manual_seed(0)
print("samples_per_s", image_pipeline_ms(batch, steps, window, downsample)["samples_per_s"])
"""


def allocator_speedup(
    batch: int, obs_window: int, downsample: int, steps: int, threads: int, pairs: int = 3
) -> tuple[float, float, float]:
    """(samples/s under glibc's allocator defaults, with `vqbet.runtime.retain_freed_memory`,
    speed-up) of the pixel training step of `image_pipeline_ms` (loading + step), each side in
    processes of its own (the setting is process-wide), in alternating pairs."""
    import sys

    repo = Path(__file__).resolve().parents[1]

    def samples_per_s(retain: bool) -> float:
        args = [int(retain), threads, batch, obs_window, downsample, steps]
        command = [sys.executable, "-c", _PIXEL_STEP, *map(str, args)]
        return _samples_per_s_in_process(command, [repo, Path(__file__).parent], "pixel step")

    return alternating_pairs(lambda: samples_per_s(False), lambda: samples_per_s(True), pairs)


@torch.no_grad()
def call_ms(call: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor, calls: int) -> float:
    """Median ms of `call(obs)` (a predict_action_chunk: the eager policy's or an exported one's)
    over `calls` calls after 5 warm-up calls."""
    times = []
    for _ in range(calls + 5):
        start = time.perf_counter()
        call(obs)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[5:])


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product")


def matmul_share(name: str, batch: int, steps: int, amp: bool = True) -> float:
    """Share of a training step's self CPU time (torch.profiler) spent in matrix products
    (mm, addmm, bmm, baddbmm, attention) for config `name`: what the rest of the step costs."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cpu")
    policy = make_policy(name)
    train_samples_per_s(policy, batch, 2, device, amp=amp)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_samples_per_s(policy, batch, steps, device, amp=amp)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key.startswith(MATMUL_OPS))
    return matmul / total


@torch.no_grad()
def act_latency_ms(policy: VQBeTPolicy, batch: int, calls: int, device: torch.device) -> tuple[float, float]:
    """Median ms of select_action: (ensemble mode = a model call every step, queue mode average)."""
    policy.to(device).eval()
    obs = np.random.default_rng(0).normal(size=(batch, policy.config.obs_dim)).astype(np.float32)
    out = []
    for mode in ("ensemble", "queue"):
        policy.config.execution = mode
        policy.reset()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            action = policy.select_action(obs)
            if device.type == "cuda":
                action.cpu()
            times.append(time.perf_counter() - start)
        out.append(1000 * statistics.median(times[10:]) if mode == "ensemble" else 1000 * np.mean(times[10:]))
    policy.config.execution = "queue"
    return out[0], out[1]


def image_pipeline_ms(
    batch: int, steps: int, obs_window: int = 5, downsample: int = 1, amp: bool = True
) -> dict[str, float]:
    """Where a pixel policy's training step goes (PushT from pixels: state 2, one 96x96 camera
    cropped to 84x84 and average-pooled by `downsample`, `obs_window` frames, Ta 5, the default conv
    encoder): ms per batch of reading and decoding the frames from an lzf-compressed HDF5 (a
    single-process DataLoader over TrajectoryWindows), of the random crop, normalisation and pooling,
    and of the whole training step (encoder + transformer + heads, forward, backward, AdamW) on an
    in-memory batch; plus the frames/s the loader delivers."""
    import tempfile

    from vqbet.data import EpisodeData, TrajectoryWindows, read_hdf5, write_hdf5

    rng = np.random.default_rng(0)
    n, length = 40, 125
    data = EpisodeData(
        obs=rng.normal(size=(n * length, 2)).astype(np.float32),
        action=rng.normal(size=(n * length, 2)).astype(np.float32),
        episode_ends=np.arange(1, n + 1) * length,
        images={"top": rng.integers(0, 256, (n * length, 96, 96, 3), dtype=np.uint8)},
    )
    vision = dict(cameras=["top"], image_size=[96, 96], crop=[84, 84], downsample=downsample)
    tokenizer = ActionTokenizer(action_dim=2, chunk_size=5, num_layers=2, codebook_size=16)
    tokenizer.normalizer.fit(torch.randn(1000, 2))
    config = VQBeTConfig(obs_dim=2, action_dim=2, obs_window=obs_window, vision=vision)
    policy = VQBeTPolicy(config, tokenizer)
    policy.obs_normalizer.fit(torch.randn(1000, 2))
    policy.freeze_statistics()
    with tempfile.TemporaryDirectory() as tmp:
        stored = read_hdf5(write_hdf5(f"{tmp}/pixels.hdf5", data))
        windows = TrajectoryWindows(stored, obs_window, 5, cameras=["top"])
        loader = iter(torch.utils.data.DataLoader(windows, batch_size=batch, shuffle=True))
        first = next(loader)
        start = time.perf_counter()
        for _ in range(steps):
            next(loader)
        load_ms = 1000 * (time.perf_counter() - start) / steps
    frames = first["obs"]["top"].reshape(-1, 96, 96, 3)
    encoders = policy.image_encoders.train()
    start = time.perf_counter()
    for _ in range(steps):
        encoders.pixels(frames)
    crop_ms = 1000 * (time.perf_counter() - start) / steps
    step = training_step(policy, first, torch.device("cpu"), amp)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_ms = 1000 * (time.perf_counter() - start) / steps
    return {
        "load_ms": load_ms,
        "crop_ms": crop_ms,
        "step_ms": step_ms,
        "loader_frames_per_s": batch * obs_window * 1000 / load_ms,
        "samples_per_s": batch * 1000 / (load_ms + step_ms),
    }
