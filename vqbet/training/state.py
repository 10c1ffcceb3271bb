"""Training state saved without pickle: optimizer tensors and RNG state in safetensors, the rest
(step, schedule, hyper-parameters, history) in JSON."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into flat tensors and JSON-able groups."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Restore what `optimizer_to_files` wrote."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, index, key = name.split(".", 2)
        # A fresh allocation: tensors read from a file may be unaligned, and vectorised kernels
        # take a different (FMA vs. not) path on unaligned heads, which breaks bitwise resume.
        state.setdefault(int(index), {})[key] = value.clone()
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    # Which kernel steps (fused / foreach) is this optimizer's choice for this machine, not state:
    # a run resumed where the fused kernel is missing (or newly present) keeps its own.
    groups = [
        {**saved, **{k: group[k] for k in ("fused", "foreach") if k in group}}
        for saved, group in zip(meta["param_groups"], optimizer.param_groups, strict=False)
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, Tensor]:
    """The torch CPU (and CUDA, when present) random states."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def restore_rng(tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
