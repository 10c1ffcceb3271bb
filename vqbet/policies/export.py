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
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vqbet.io.checkpoint import CONFIG_FILE, read_json, write_folder
from vqbet.policies.inputs import InputSpec, assert_finite_in_graph, check_inputs

PROGRAM_FILE = "program.pt2"
EXPORT_FORMAT = "vqbet-exported-policy"
EXPORT_VERSION = 2


class _ChunkProgram(nn.Module):
    """The acting computation of a policy as one module: (obs[, goal]) -> chunk."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Any, goal: Tensor | None = None) -> Tensor:
        assert_finite_in_graph(obs["state"] if isinstance(obs, dict) else obs, "obs")
        if goal is not None:
            assert_finite_in_graph(goal, "goal")
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
    acting.before_export()
    with torch.no_grad():
        program = torch.export.export(_ChunkProgram(acting), args, dynamic_shapes=shapes)

    interface = {
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
    }
    digest: dict[str, str] = {}

    def write_program(file: Path) -> None:
        # Serialised in memory, then written by Python: on a full disk torch's C++ zip writer
        # aborts the process, where Python's write raises an OSError we can name.
        buffer = io.BytesIO()
        if compiled:
            torch._inductor.aoti_compile_and_package(program, package_path=buffer)
        else:
            torch.export.save(program, buffer)
        data = buffer.getvalue()
        file.write_bytes(data)
        digest.update(program=hashlib.sha256(data).hexdigest())
        digest.update(interface=_interface_digest(digest["program"], interface))

    def write_config(file: Path) -> None:
        meta = {
            **interface,
            "program_sha256": digest["program"],
            "interface_sha256": digest["interface"],
            "policy": policy.meta()["policy"],
            "metadata": policy.metadata,
        }
        file.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    return write_folder(
        path,
        json_files={},
        tensor_files={},
        other_files={PROGRAM_FILE: write_program, CONFIG_FILE: write_config},
    )


INTERFACE = (
    "obs_window",
    "obs_dim",
    "cameras",
    "goal_dim",
    "action_chunk",
    "action_dim",
    "max_batch",
    "compiled",
    "torch",
)
"""The config.json fields that describe what the program takes and gives: hashed with it."""


def _interface_digest(program_sha256: str, meta: dict[str, Any]) -> str:
    fields = {key: meta.get(key) for key in INTERFACE}
    return hashlib.sha256((program_sha256 + json.dumps(fields, sort_keys=True)).encode()).hexdigest()


def _verify(folder: Path, meta: dict[str, Any], source: str) -> Path:
    """The program file, checked against the digests config.json records."""
    file = folder / PROGRAM_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (expected the exported program)")
    if meta.get("format_version", 1) < 2:  # written before digests were recorded: nothing to compare
        return file
    recorded = meta.get("program_sha256")
    if not isinstance(recorded, str):
        raise ValueError(f"{source}: 'program_sha256' is missing; export the policy again")
    found = hashlib.sha256(file.read_bytes()).hexdigest()
    if found != recorded:
        raise ValueError(
            f"{file} is damaged or was replaced: its sha256 is {found[:12]}..., config.json records "
            f"{recorded[:12]}...; export the policy again"
        )
    if _interface_digest(found, meta) != meta.get("interface_sha256"):
        raise ValueError(
            f"{source}: the fields {list(INTERFACE)} no longer describe {PROGRAM_FILE} (config.json was "
            "edited after export); export the policy again rather than editing them"
        )
    return file


class ExportedPolicy:
    """An exported policy folder, loaded: `predict_action_chunk` checks shapes, then runs the
    program. Needs torch alone."""

    def __init__(self, program: Any, meta: dict[str, Any], source: str) -> None:
        self.program, self.meta, self.source = program, meta, source
        self.spec = InputSpec.of_export(meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExportedPolicy:
        meta = read_json(path)
        source = str(Path(path) / CONFIG_FILE)
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{source}: not an exported vqbet policy (format {meta.get('format')!r})")
        if meta.get("format_version") not in (1, EXPORT_VERSION):
            raise ValueError(
                f"{source}: export format version {meta.get('format_version')!r}; this vqbet reads 1 and "
                f"{EXPORT_VERSION}"
            )
        file = _verify(Path(path), meta, source)
        if meta.get("compiled") and meta.get("torch") != torch.__version__:
            raise ValueError(
                f"{source}: an AOTInductor package compiled with torch {meta.get('torch')} runs only "
                f"with that version (this is {torch.__version__}); export it again here"
            )
        try:
            if meta.get("compiled"):
                program = torch._inductor.aoti_load_package(str(file))
            else:
                program = torch.export.load(str(file)).module()
        except Exception as err:  # torch raises zip, pickle or runtime errors for a damaged file
            raise ValueError(
                f"{file} is not a loadable exported program: {type(err).__name__}: {err}"
            ) from None
        return cls(program, meta, source)

    def predict_action_chunk(self, obs_window: Any, goal: Tensor | np.ndarray | None = None) -> Tensor:
        """obs_window (B, To, D) raw (or {"state": ..., <camera>: (B, To, H, W, 3) uint8} for a
        policy with cameras) -> action chunk (B, Ta, A) raw, as the policy's own."""
        obs, goal = check_inputs(obs_window, self.spec, self.source, steps=True, goal=goal)
        args: tuple[Any, ...] = (obs if len(obs) > 1 else obs["state"],)
        if goal is not None:
            args += (goal,)
        with torch.no_grad():
            return self.program(*args)
