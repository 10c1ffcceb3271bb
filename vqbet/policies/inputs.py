"""The one check of what a policy is given, shared by every entry point: eager `select_action`,
`predict_action_chunk` and `forward`, and `ExportedPolicy` (the exported program itself refuses
NaN/inf states and goals with the same words, inside its graph).

An observation is a state array, or a dict {"state": ..., <camera>: ...}; numpy or torch. The
checks, in order, each error naming the entry point, the key and what was passed:
- the cameras the policy sees are all there (keys it does not see are dropped);
- the state is real numbers (any float or integer dtype, taken as float32) of shape (B, D) for one
  step, or (B, T, D) for a window (1 <= T <= To; exactly To for an exported program);
- camera frames are uint8 (0-255) of shape (B, H, W, 3), or (B, T, H, W, 3): frames of any other
  dtype are refused rather than converted (float frames in [0, 1] are `round(x * 255)` as uint8);
- every part has the same batch size B (at most the export's max_batch), a goal is (B, G);
- the state and the goal are finite (NaN or inf refused; `select_action` may hold instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

FINITE_MESSAGE = "holds NaN or inf"
"""The words of a non-finite input error, eager or exported (the graph asserts with them)."""


@dataclass(frozen=True)
class InputSpec:
    """What a policy takes: window To, state size D, cameras {name: (H, W, 3)}, goal size G (0:
    none), the largest batch (0: any) and whether a window must be exactly To steps."""

    obs_window: int
    obs_dim: int
    cameras: dict[str, tuple[int, ...]] = field(default_factory=dict)
    goal_dim: int = 0
    max_batch: int = 0
    full_window: bool = False

    @classmethod
    def of(cls, config: Any) -> InputSpec:
        """The inputs of a policy with this `PolicyConfig` (goal_dim from goal conditioning)."""
        goal = getattr(config, "goal_conditioning", "none") != "none"
        return cls(
            obs_window=config.obs_window,
            obs_dim=config.obs_dim,
            cameras={name: (*config.vision.image_size, 3) for name in config.vision.cameras},
            goal_dim=int(getattr(config, "goal_dim", 0)) if goal else 0,
        )

    @classmethod
    def of_export(cls, meta: dict[str, Any]) -> InputSpec:
        """The inputs of an exported program, from its config.json."""
        return cls(
            obs_window=int(meta["obs_window"]),
            obs_dim=int(meta["obs_dim"]),
            cameras={name: tuple(shape) for name, shape in (meta.get("cameras") or {}).items()},
            goal_dim=int(meta.get("goal_dim") or 0),
            max_batch=int(meta.get("max_batch") or 0),
            full_window=True,
        )


def _tensor(value: Any, name: str, where: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}: {name} must be an array of numbers, got {array.dtype} {type(value).__name__}"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def _shape(*dims: Any) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def check_inputs(
    obs: Any,
    spec: InputSpec,
    where: str,
    *,
    steps: bool,
    goal: Any = None,
    finite: bool = True,
    device: torch.device | str | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """`obs` (see the module) checked against `spec` -> ({"state": float32, <camera>: uint8, ...}
    on `device`, goal float32 or None). `steps`: obs holds a window (B, T, ...), else one step
    (B, ...). `finite=False` leaves non-finite states to the caller. ValueError names `where`."""
    given = dict(obs) if isinstance(obs, dict) else {"state": obs}
    state_name = "obs['state']" if isinstance(obs, dict) else "obs"
    if "state" not in given:
        raise ValueError(f"{where}: an observation dict needs a 'state' entry, got keys {sorted(given)}")
    missing = sorted(name for name in spec.cameras if name not in given)
    if missing:
        raise ValueError(
            f"{where}: camera(s) {missing} missing: the policy sees {sorted(spec.cameras)}, got keys "
            f"{sorted(given)}"
        )
    state = _tensor(given["state"], state_name, where)
    lead = ("B", f"T <= {spec.obs_window}" if not spec.full_window else spec.obs_window) if steps else ("B",)
    window_ok = not steps or (
        state.ndim == 3
        and (
            state.shape[1] == spec.obs_window if spec.full_window else 1 <= state.shape[1] <= spec.obs_window
        )
    )
    batch = state.shape[0] if state.ndim else 0
    batch_ok = batch >= 1 and (not spec.max_batch or batch <= spec.max_batch)
    if state.ndim != len(lead) + 1 or state.shape[-1] != spec.obs_dim or not window_ok or not batch_ok:
        limit = f" with 1 <= B <= {spec.max_batch}" if spec.max_batch else ""
        raise ValueError(
            f"{where}: {state_name} must have shape {_shape(*lead, spec.obs_dim)}{limit}, got "
            f"{tuple(state.shape)}"
        )
    if state.dtype == torch.bool or state.is_complex():
        raise ValueError(f"{where}: {state_name} must hold real numbers, got {state.dtype}")
    out = {"state": state.to(device=device, dtype=torch.float32)}
    for name, frame in spec.cameras.items():
        image = _tensor(given[name], f"obs[{name!r}]", where)
        want = (*state.shape[: len(lead)], *frame)
        if image.dtype != torch.uint8 or tuple(image.shape) != want:
            hint = " (frames are 0-255 uint8: a float frame x in [0, 1] is round(x * 255))"
            raise ValueError(
                f"{where}: camera {name!r} must be uint8 frames of shape {_shape(*want)}, got "
                f"{tuple(image.shape)} {str(image.dtype).removeprefix('torch.')}"
                f"{hint if image.is_floating_point() else ''}"
            )
        out[name] = image.to(device=device)
    if finite:
        check_finite(out["state"], state_name, where)
    if spec.goal_dim and goal is None:
        raise ValueError(f"{where}: this policy is goal-conditioned: pass goal (B, {spec.goal_dim})")
    if goal is not None:
        if not spec.goal_dim:
            raise ValueError(f"{where}: this policy is not goal-conditioned: pass no goal")
        goal = _tensor(goal, "goal", where).to(device=device, dtype=torch.float32)
        if tuple(goal.shape) != (batch, spec.goal_dim):
            raise ValueError(
                f"{where}: goal must have shape ({batch}, {spec.goal_dim}), got {tuple(goal.shape)}"
            )
        check_finite(goal, "goal", where)
    return out, goal


def check_finite(values: Tensor, name: str, where: str) -> None:
    """ValueError naming the first batch row of `values` (B, ...) that holds NaN or inf."""
    finite = torch.isfinite(values).reshape(values.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"{where}: {name} {FINITE_MESSAGE} (batch row(s) {rows})")


def assert_finite_in_graph(values: Tensor, name: str) -> None:
    """The finiteness check as a graph op, so that an exported program refuses NaN/inf too."""
    torch._assert_async(torch.isfinite(values).all(), f"{name} {FINITE_MESSAGE}")
