"""The tasks on MuJoCo Warp: N worlds of one task stepped in one call, as a
`gymnasium.vector.VectorEnv` whose observations and actions are torch tensors on the device.

    from envs.warp import make_vector_env
    envs = make_vector_env("Kitchen", num_envs=1024)      # CUDA if Warp sees a GPU, else its CPU device
    obs, info = envs.reset(seed=0)                         # obs (1024, 59) torch.float32
    obs, reward, terminated, truncated, info = envs.step(actions)   # actions (1024, 9)

Needs the `warp` extra (`pip install "vqbet[warp]"`: mujoco-warp and warp-lang) and torch; this
file imports neither at import time, so `check_task` and the errors it raises cost nothing. Only
Kitchen is ported (`SUPPORTED`; docs/evaluation.md says why the others are not).
"""

from __future__ import annotations

import warnings
from typing import Any

SUPPORTED = ("Kitchen",)
"""Tasks with a MuJoCo Warp vector env."""
NOT_PORTED = {
    "PushT": (
        "its task logic (coverage of the goal by the T) is not ported; its model runs on Warp, but its "
        "pusher, a cylinder, meets the T's boxes through the cylinder-box collision whose contacts "
        "differ from MuJoCo's (docs/evaluation.md)"
    ),
    "BlockPush": "its task logic is not ported (the simulator supports its model)",
    "MultiReach": "its task logic is not ported (the simulator supports its model)",
}
"""Why each other task has no Warp backend."""
EXTRA = 'pip install "vqbet[warp]"'


def task_name(task: str) -> str:
    """The task name ("Kitchen") of "Kitchen", "vqbet/Kitchen-v0" or "kitchen"."""
    name = task.split("/")[-1].split("-v")[0]
    return {n.lower(): n for n in (*SUPPORTED, *NOT_PORTED)}.get(name.lower(), name)


def check_task(task: str) -> str:
    """The task's name if MuJoCo Warp runs it; else ValueError naming the task and the reason.
    Imports nothing heavy: call it before anything compiles."""
    name = task_name(task)
    if name in SUPPORTED:
        return name
    why = NOT_PORTED.get(name, "it is not a vqbet task")
    raise ValueError(f"{task}: no MuJoCo Warp backend ({why}); supported: {list(SUPPORTED)}")


def load_warp() -> tuple[Any, Any]:
    """(warp, mujoco_warp), or ImportError naming the extra that installs them."""
    try:
        import warp

        # No banner and no line per loaded kernel module (hundreds): warnings and errors only.
        warp.config.log_level = warp.LOG_WARNING
        import mujoco_warp
    except ImportError as error:
        raise ImportError(f"the MuJoCo Warp backend needs mujoco-warp and warp-lang: {EXTRA}") from error
    return warp, mujoco_warp


def resolve_device(device: str = "auto") -> str:
    """The Warp device to run on: "auto" is "cuda:0" when Warp sees a CUDA device, else "cpu" with a
    warning (Warp's CPU device runs the same kernels one world after another: for tests, not speed).
    A named CUDA device that is missing is an error."""
    warp, _ = load_warp()
    warp.init()
    if device == "auto":
        if warp.is_cuda_available():
            return "cuda:0"
        warnings.warn(
            "MuJoCo Warp: no CUDA device, running on Warp's CPU device (correct, but much slower than "
            "the CPU backend; eval.backend=cpu is the fast choice here)",
            RuntimeWarning,
            stacklevel=3,
        )
        return "cpu"
    if device.startswith("cuda") and not warp.is_cuda_available():
        raise RuntimeError(f"MuJoCo Warp: device {device!r} asked for, but Warp sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"MuJoCo Warp device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return device


def make_vector_env(task: str, num_envs: int, device: str = "auto", **kwargs: Any) -> Any:
    """The MuJoCo Warp vector env of `task` with `num_envs` worlds on `device` (see
    `resolve_device`); `kwargs` go to the task's vector env (e.g. autoreset_mode)."""
    name = check_task(task)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    device = resolve_device(device)
    from envs.warp.kitchen import KitchenWarpVectorEnv

    return {"Kitchen": KitchenWarpVectorEnv}[name](num_envs, device=device, **kwargs)
