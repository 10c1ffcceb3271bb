"""Deployment: a trained policy as a `torch.export` program that acts without the training code.

    policy.export("deploy/kitchen")                      # any family: vqbet, bet, mlp, yours
    acting = ExportedPolicy.load("deploy/kitchen")       # torch only: no vqbet.policies needed
    chunk = acting.predict_action_chunk(obs_window)      # (B, To, D) raw -> (B, Ta, A) raw

The folder holds `program.pt2` (`torch.export.save`: the graph of normalisation, network, code
choice, decoding and offsets, with the weights, the batch size dynamic) and `config.json` (the
shapes it takes and gives, the policy's config and metadata). Anything that loads `.pt2` files
runs it: `torch.export.load("deploy/kitchen/program.pt2").module()(obs)`.

`policy.export(path, compiled=True)` compiles that program ahead of time with AOTInductor into a
package of native code (`torch._inductor.aoti_compile_and_package`: a C++ compiler at export time,
about a minute on 2 CPU cores; none when loading): the fused kernels act several times faster than
the eager policy at batch 1 (`benchmarks/bench_policy.py`), equal to it up to float rounding (1e-5),
for every batch size up to `max_batch` with no further compile. The package runs only with the
torch version and kind of machine (CPU or CUDA) it was compiled for; `config.json` records both and
loading elsewhere is refused by name. Sampling policies sample
inside the program at their `temperature` and `min_p` (from torch's global generator); temperature 0 acts
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

from vqbet.io.checkpoint import CONFIG_FILE, read_json, write_folder

PROGRAM_FILE = "program.pt2"
EXPORT_FORMAT = "vqbet-exported-policy"
EXPORT_VERSION = 1


class _ChunkProgram(nn.Module):
    """The acting computation of a policy as one module: (obs[, goal]) -> chunk."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Any, goal: Tensor | None = None) -> Tensor:
        return self.policy._predict_chunk(obs, goal)


def export_policy(
    policy: Any,
    path: str | os.PathLike,
    *,
    max_batch: int = 4096,
    compiled: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write `policy` (a vqbet Policy) as an exported program folder at `path`, atomically; any
    batch size from 1 to `max_batch` runs without recompiling. `compiled`: an AOTInductor package
    of native code for this machine's CPU instead of a portable graph. An existing folder at
    `path` is replaced only with `overwrite`; an existing file never. Returns the folder."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file; an export is a folder: choose another path")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: pass overwrite=True to replace it (atomically)")
    c = policy.config
    goal_dim = int(getattr(c, "goal_dim", 0)) if getattr(c, "goal_conditioning", "none") != "none" else 0
    acting = copy.deepcopy(policy).to("cpu").eval()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    cameras = {name: (*c.vision.image_size, 3) for name in c.vision.cameras}
    obs: Any = torch.zeros(2, c.obs_window, c.obs_dim)
    shapes: dict[str, Any] = {"obs": {0: batch}}
    if cameras:  # a dict of the state and every camera's frames, batch dynamic in each
        obs = {
            "state": obs,
            **{k: torch.zeros(2, c.obs_window, *v, dtype=torch.uint8) for k, v in cameras.items()},
        }
        shapes = {"obs": {key: {0: batch} for key in obs}}
    args: tuple[Any, ...] = (obs,)
    if goal_dim:
        args += (torch.zeros(2, goal_dim),)
        shapes["goal"] = {0: batch}
    with torch.no_grad():
        program = torch.export.export(_ChunkProgram(acting), args, dynamic_shapes=shapes)

    def write(file: Path) -> None:
        if compiled:
            torch._inductor.aoti_compile_and_package(program, package_path=str(file))
        else:
            torch.export.save(program, str(file))

    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "family": policy.name,
        "obs_window": c.obs_window,
        "obs_dim": c.obs_dim,
        "cameras": {name: list(shape) for name, shape in cameras.items()},
        "goal_dim": goal_dim,
        "action_chunk": c.action_chunk,
        "action_dim": c.action_dim,
        "max_batch": max_batch,
        "compiled": compiled,
        "torch": torch.__version__,
        "policy": policy.meta()["policy"],
        "metadata": policy.metadata,
    }
    return write_folder(
        path,
        json_files={CONFIG_FILE: meta},
        tensor_files={},
        other_files={PROGRAM_FILE: write},
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
        if not meta.get("compiled"):
            return cls(torch.export.load(str(file)).module(), meta, source)
        if meta.get("torch") != torch.__version__:
            raise ValueError(
                f"{source}: an AOTInductor package compiled with torch {meta.get('torch')} runs only "
                f"with that version (this is {torch.__version__}); export it again here"
            )
        return cls(torch._inductor.aoti_load_package(str(file)), meta, source)

    def predict_action_chunk(self, obs_window: Any, goal: Tensor | np.ndarray | None = None) -> Tensor:
        """obs_window (B, To, D) raw (or {"state": ..., <camera>: (B, To, H, W, 3) uint8} for a
        policy with cameras) -> action chunk (B, Ta, A) raw, as the policy's own."""
        m = self.meta
        cameras = m.get("cameras") or {}
        frames = dict(obs_window) if isinstance(obs_window, dict) else {"state": obs_window}
        obs = torch.as_tensor(frames.pop("state", None), dtype=torch.float32)
        want = (m["obs_window"], m["obs_dim"])
        if obs.ndim != 3 or tuple(obs.shape[1:]) != want or not 1 <= obs.shape[0] <= m["max_batch"]:
            raise ValueError(
                f"{self.source}: the program takes obs (B, {want[0]}, {want[1]}) with 1 <= B <= "
                f"{m['max_batch']}, got {tuple(obs.shape)}"
            )
        if sorted(frames) != sorted(cameras):
            raise ValueError(
                f"{self.source}: the program takes cameras {sorted(cameras)}, got {sorted(frames)}"
            )
        args: tuple[Any, ...] = (obs,)
        if cameras:
            images = {
                k: torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v)
                for k, v in frames.items()
            }
            for name, shape in cameras.items():
                if tuple(images[name].shape) != (*obs.shape[:2], *shape) or images[name].dtype != torch.uint8:
                    raise ValueError(
                        f"{self.source}: camera {name!r} must be (B, {want[0]}, "
                        f"{', '.join(map(str, shape))}) uint8, got {tuple(images[name].shape)} "
                        f"{images[name].dtype}"
                    )
            args = ({"state": obs, **images},)
        if m["goal_dim"]:
            if goal is None:
                raise ValueError(
                    f"{self.source}: this policy is goal-conditioned: pass goal (B, {m['goal_dim']})"
                )
            args += (torch.as_tensor(goal, dtype=torch.float32),)
        with torch.no_grad():
            return self.program(*args)
