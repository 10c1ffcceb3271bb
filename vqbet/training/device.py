"""Where and how training runs: the device, bf16 autocast, the DDP process group and
`torch.compile`, in one place for the training and evaluation jobs."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from vqbet.policies.base import Policy


def compile_network(policy: Policy) -> Policy:
    """Compile in place the arithmetic-heavy part of a policy (its `network`); in-place
    `Module.compile` keeps the state-dict keys, so checkpoints are unchanged."""
    policy.network.compile()
    return policy


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; "cuda" without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but torch sees no CUDA GPU")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL on CUDA, gloo on CPU, chosen
    from the device. Returns (rank, world size, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls natively: CUDA, or a CPU with AVX512-BF16/AMX (oneDNN's
    own check; without them bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_autocast(device: torch.device, amp: bool, say: bool = False) -> torch.autocast:
    """bf16 autocast for the training forward pass when `amp` and the device has native bf16."""
    enabled = amp and native_bf16(device)
    if amp and not enabled and say:
        print("amp: this CPU has no native bf16 (AVX512-BF16 or AMX); training in float32", flush=True)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
