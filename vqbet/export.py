"""Deployment: a trained policy as a `torch.export` program that acts without the training code.

    policy.export("deploy/kitchen")                      # any family: vqbet, bet, mlp, yours
    acting = ExportedPolicy.load("deploy/kitchen")       # torch only: no vqbet.policies needed
    chunk = acting.predict_action_chunk(obs_window)      # (B, To, D) raw -> (B, Ta, A) raw

The folder holds `program.pt2` (`torch.export.save`: the graph of normalisation, network, code
choice, decoding and offsets, with the weights, the batch size dynamic) and `config.json` (the
shapes it takes and gives, the policy's config and metadata). Anything that loads `.pt2` files
runs it: `torch.export.load("deploy/kitchen/program.pt2").module()(obs)`. Sampling policies sample
inside the program at their `temperature` (from torch's global generator); temperature 0 acts
greedily and equals the eager policy bit for bit (tested). A `.pt2` archive is torch's format, not
our safetensors: load only programs you made or trust.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vqbet.checkpoint import CONFIG_FILE, read_json, write_folder

PROGRAM_FILE = "program.pt2"
EXPORT_FORMAT = "vqbet-exported-policy"
EXPORT_VERSION = 1


class _ChunkProgram(nn.Module):
    """The acting computation of a policy as one module: (obs[, goal]) -> chunk."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        return self.policy._predict_chunk(obs, goal)


def export_policy(policy: Any, path: str | os.PathLike, *, max_batch: int = 4096) -> Path:
    """Write `policy` (a vqbet Policy) as an exported program folder at `path`, atomically; any
    batch size from 1 to `max_batch` runs without recompiling. Returns the folder."""
    c = policy.config
    goal_dim = int(getattr(c, "goal_dim", 0)) if getattr(c, "goal_conditioning", "none") != "none" else 0
    acting = copy.deepcopy(policy).to("cpu").eval()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    obs = torch.zeros(2, c.obs_window, c.obs_dim)
    args: tuple[Tensor, ...] = (obs,)
    shapes: dict[str, Any] = {"obs": {0: batch}}
    if goal_dim:
        args += (torch.zeros(2, goal_dim),)
        shapes["goal"] = {0: batch}
    with torch.no_grad():
        program = torch.export.export(_ChunkProgram(acting), args, dynamic_shapes=shapes)
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "family": policy.name,
        "obs_window": c.obs_window,
        "obs_dim": c.obs_dim,
        "goal_dim": goal_dim,
        "action_chunk": c.action_chunk,
        "action_dim": c.action_dim,
        "max_batch": max_batch,
        "torch": torch.__version__,
        "policy": policy.meta()["policy"],
        "metadata": policy.metadata,
    }
    return write_folder(
        path,
        json_files={CONFIG_FILE: meta},
        tensor_files={},
        other_files={PROGRAM_FILE: lambda file: torch.export.save(program, str(file))},
    )


class ExportedPolicy:
    """An exported policy folder, loaded: `predict_action_chunk` checks shapes, then runs the
    program. Needs torch alone."""

    def __init__(self, program: Any, meta: dict[str, Any], source: str) -> None:
        self.program, self.meta, self.source = program, meta, source

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExportedPolicy:
        meta = read_json(path)
        source = str(Path(path) / CONFIG_FILE)
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{source}: not an exported vqbet policy (format {meta.get('format')!r})")
        file = Path(path) / PROGRAM_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing (expected the exported program)")
        return cls(torch.export.load(str(file)).module(), meta, source)

    def predict_action_chunk(
        self, obs_window: Tensor | np.ndarray, goal: Tensor | np.ndarray | None = None
    ) -> Tensor:
        """obs_window (B, To, D) raw -> action chunk (B, Ta, A) raw, as the policy's own."""
        m = self.meta
        obs = torch.as_tensor(obs_window, dtype=torch.float32)
        want = (m["obs_window"], m["obs_dim"])
        if obs.ndim != 3 or tuple(obs.shape[1:]) != want or not 1 <= obs.shape[0] <= m["max_batch"]:
            raise ValueError(
                f"{self.source}: the program takes obs (B, {want[0]}, {want[1]}) with 1 <= B <= "
                f"{m['max_batch']}, got {tuple(obs.shape)}"
            )
        args = (obs,)
        if m["goal_dim"]:
            if goal is None:
                raise ValueError(
                    f"{self.source}: this policy is goal-conditioned: pass goal (B, {m['goal_dim']})"
                )
            args += (torch.as_tensor(goal, dtype=torch.float32),)
        with torch.no_grad():
            return self.program(*args)
