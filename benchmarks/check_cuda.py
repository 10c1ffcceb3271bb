"""CUDA check: train on the GPU in fp32 and bf16, act, and compare against the CPU on the same batch.

    python benchmarks/check_cuda.py [--steps 200]

Needs only torch, safetensors, tqdm, numpy (no simulator). Prints a table with the GPU's name.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from harness import CONFIGS, act_latency_ms, make_policy, random_batch, train_samples_per_s

from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.training.loop import PolicyTrainConfig, train_policy


def cpu_cuda_agreement() -> dict[str, float]:
    """Same weights, same batch: loss and argmax actions on CPU (fp32) and CUDA (fp32, no TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cpu = make_policy(next(iter(CONFIGS))).eval()
    gpu = make_policy(next(iter(CONFIGS)))
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda().eval()
    batch = random_batch(cpu, 256, torch.device("cpu"))
    with torch.no_grad():
        loss_cpu, _ = cpu(batch)
        loss_gpu, _ = gpu({k: v.cuda() for k, v in batch.items()})
    cpu.config.temperature = gpu.config.temperature = 0.0
    obs = batch["obs"][:, -1].numpy()
    a_cpu = cpu.select_action(obs)
    a_gpu = gpu.select_action(obs).cpu()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {
        "loss_cpu": loss_cpu.item(),
        "loss_cuda": loss_gpu.item(),
        "action_max_abs_diff": (a_cpu - a_gpu).abs().max().item(),
    }


def train_policy_on_cuda(steps: int) -> float:
    """The real training loop (DataLoader workers, pinned memory, bf16 autocast) for `steps` steps."""
    torch.manual_seed(0)
    policy = make_policy(next(iter(CONFIGS)))
    g = torch.Generator().manual_seed(0)
    episodes = [
        {"obs": torch.randn(90, 6, generator=g).numpy(), "action": torch.randn(90, 2, generator=g).numpy()}
        for _ in range(200)
    ]
    windows = TrajectoryWindows(EpisodeData.from_episodes(episodes), obs_window=5, action_chunk=5)
    cfg = PolicyTrainConfig(
        steps=steps,
        batch_size=1024,
        eval_every=steps,
        checkpoint_every=steps,
        log_every=max(1, steps // 4),
        num_workers=4,
        device="cuda",
        amp=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        state = train_policy(policy, windows, None, cfg, tmp, progress=False)
    return [h for h in state["history"] if "samples_per_s" in h][-1]["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("check_cuda.py: torch sees no CUDA GPU")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    agreement = cpu_cuda_agreement()
    rel = abs(agreement["loss_cpu"] - agreement["loss_cuda"]) / abs(agreement["loss_cpu"])
    print(
        f"CPU vs CUDA (fp32, same weights and batch): loss {agreement['loss_cpu']:.6f} vs "
        f"{agreement['loss_cuda']:.6f} (rel. diff {rel:.1e}); argmax actions max |diff| "
        f"{agreement['action_max_abs_diff']:.2e}"
    )
    print(
        "\n| config | params | train samples/s fp32+TF32 (batch 1024) | bf16 autocast | "
        "select_action ms batch 1 (model call) | batch 64 |"
    )
    print("|---|---|---|---|---|---|")
    for name in CONFIGS:
        torch.manual_seed(0)
        policy = make_policy(name)
        params = sum(p.numel() for p in policy.parameters())
        fp32 = train_samples_per_s(policy, 1024, args.steps, device, amp=False)
        bf16 = train_samples_per_s(policy, 1024, args.steps, device, amp=True)
        b1, _ = act_latency_ms(policy, 1, 300, device)
        b64, _ = act_latency_ms(policy, 64, 300, device)
        print(f"| {name} | {params:,} | {fp32:,.0f} | {bf16:,.0f} | {b1:.2f} | {b64:.2f} |", flush=True)
    print(
        f"\ntrain_policy on CUDA (DataLoader 4 workers, pinned memory, bf16): "
        f"{train_policy_on_cuda(args.steps):,.0f} samples/s"
    )
    ok = rel < 1e-3 and agreement["action_max_abs_diff"] < 1e-3
    print("CHECK", "PASSED" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
