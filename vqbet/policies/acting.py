"""Acting from a chunk predictor: observation history, episode-start padding, open-loop queue or
receding horizon (the first `execute_steps` of each chunk), closed-loop temporal ensembling,
per-environment resets for vector envs.

vqbet.policies.Policy mixes this in and provides `predict_action_chunk(obs_window (B, To, D), goal)
-> (B, Ta, A)`, a `config` with obs_dim, action_dim, obs_window, action_chunk, execution,
execute_steps and ensemble_decay, `input_spec()` (what the shared input check expects), and at
least one parameter (to know its device).

Relative actions: with a config's `action_relative_to` (one observation index per action dim),
a policy learns and predicts each chunk minus those observation features of the step the chunk
starts at (e.g. a position target minus the current position), and `predict_action_chunk` adds
them back. Chunks then describe motions, not places: their spread is far smaller, so the same
normalised error is a far smaller error in the world.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from vqbet.policies.inputs import FINITE_MESSAGE, check_inputs

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)
Observation = Tensor | dict[str, Tensor]
"""A state tensor (..., D), or {"state": (..., D), <camera>: (..., H, W, 3) uint8} with cameras."""


def state_of(obs: Observation) -> Tensor:
    """The state part (..., D) of an observation."""
    return obs["state"] if isinstance(obs, dict) else obs


def batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch of windows on `device`; nested dicts (observations with cameras) too."""
    return {
        k: batch_to(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
        for k, v in batch.items()
    }


def check_relative_to(index: list[int], obs_dim: int, action_dim: int, owner: str) -> list[int]:
    """Validate a config's `action_relative_to`: empty, or one observation index per action dim."""
    index = [int(i) for i in index]
    if index and (len(index) != action_dim or min(index) < 0 or max(index) >= obs_dim):
        raise ValueError(
            f"{owner}: action_relative_to must be empty or give, for each of the {action_dim} action "
            f"dims, an observation index in [0, {obs_dim}); got {index}"
        )
    return index


def to_relative(action: ArrayT, obs: ArrayT, index: Sequence[int]) -> ArrayT:
    """Action chunks (..., Ta, A) minus the observation features `index` of the step each chunk
    starts at, obs (..., D). Torch tensors or numpy arrays alike; a no-op for an empty `index`.
    The one implementation of relative actions (training targets, phase-1 chunks, acting)."""
    if not len(index):
        return action
    return action - obs[..., list(index)][..., None, :]


def to_absolute(chunk: ArrayT, obs: ArrayT, index: Sequence[int]) -> ArrayT:
    """Inverse of `to_relative`: chunk (..., Ta, A) + obs (..., D)[index]."""
    if not len(index):
        return chunk
    return chunk + obs[..., list(index)][..., None, :]


class ChunkActing:
    """`reset(done=None)` and `select_action(obs (B, D)) -> (B, A)` for chunk-predicting policies."""

    def reset(self, done: Tensor | np.ndarray | None = None) -> None:
        """Clear the history of every environment, or of those where `done` (B,) is True."""
        if done is None:
            self._history: dict[str, Tensor] | None = None
            self._queue: Tensor | None = None
            self._ensemble: tuple[Tensor, Tensor] | None = None
            self._fresh: Tensor | None = None
            return
        if self._fresh is not None:
            done = torch.as_tensor(
                done if isinstance(done, Tensor) else np.asarray(done),
                dtype=torch.bool,
                device=self._fresh.device,
            )
            if done.shape != self._fresh.shape:
                raise ValueError(
                    f"reset(done): done must have shape ({self._fresh.shape[0]},), one flag per "
                    f"environment being acted for, got {tuple(done.shape)}"
                )
            self._fresh |= done

    @torch.no_grad()
    def select_action(self, obs: Any, goal: Tensor | np.ndarray | None = None) -> Tensor:
        """One step of a batch of environments: obs (B, D) raw, or {"state": (B, D), <camera>:
        (B, H, W, 3) uint8} for a policy with cameras -> action (B, A) raw."""
        c = self.config
        device = next(self.parameters()).device
        obs, goal = check_inputs(
            obs, self.input_spec(), "select_action", steps=False, goal=goal, finite=False, device=device
        )
        state = obs["state"]
        b = state.shape[0]
        finite = torch.isfinite(state).all(dim=1)
        if not bool(finite.all()):
            obs["state"] = self._hold_finite(state, finite)
        if (
            self._history is None
            or self._history["state"].shape[0] != b
            or self._history.keys() != obs.keys()
        ):
            self.reset()
            # pad the episode start: the first observation, To times
            self._history = {
                k: v[:, None].repeat(1, c.obs_window, *[1] * (v.ndim - 1)) for k, v in obs.items()
            }
            self._fresh = torch.zeros(b, dtype=torch.bool, device=device)
            fresh = torch.ones(b, dtype=torch.bool, device=device)
        else:
            fresh = self._fresh.clone()
            for key, value in obs.items():
                window = torch.cat([self._history[key][:, 1:], value[:, None]], dim=1)
                if fresh.any():
                    window[fresh] = value[fresh, None].expand(-1, c.obs_window, *value.shape[1:])
                self._history[key] = window
            self._fresh.zero_()
        if c.execution == "queue":
            return self._from_queue(fresh, goal)
        return self._from_ensemble(fresh, goal)

    def _window(self, rows: Tensor | None = None) -> Observation:
        """The observation history (of the envs `rows`), as predict_action_chunk takes it."""
        history = self._history if rows is None else {k: v[rows] for k, v in self._history.items()}
        return history["state"] if len(history) == 1 else history

    def _hold_finite(self, obs: Tensor, finite: Tensor) -> Tensor:
        """Non-finite state rows: an error, or (config.nonfinite_obs == "hold") each such env's
        last finite state, with one warning per policy."""
        bad = torch.nonzero(~finite).flatten().tolist()
        fresh = self._fresh if self._fresh is not None else torch.ones_like(finite)
        held = (
            self._history is not None
            and self._history["state"].shape[0] == obs.shape[0]
            and not fresh[~finite].any()
        )
        if self.config.nonfinite_obs != "hold" or not held:
            why = (
                "" if self.config.nonfinite_obs != "hold" else " at the start of an episode (nothing to hold)"
            )
            raise ValueError(
                f"select_action: the observation of env(s) {bad} {FINITE_MESSAGE}{why}; a policy acting "
                "on it would act on garbage for the next steps. Set the policy's nonfinite_obs='hold' to "
                "act on each env's last finite observation instead."
            )
        if not getattr(self, "_warned_nonfinite", False):
            warnings.warn(
                f"select_action: non-finite observation of env(s) {bad}: acting on the last finite one "
                "(nonfinite_obs='hold'; warned once)",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned_nonfinite = True
        return torch.where(finite[:, None], obs, self._history["state"][:, -1])

    def _from_queue(self, fresh: Tensor, goal: Tensor | None) -> Tensor:
        c = self.config
        b = fresh.shape[0]
        if self._queue is None:
            self._queue = torch.zeros(b, c.action_chunk, c.action_dim, device=fresh.device)
            self._queue_pos = torch.full((b,), c.action_chunk, dtype=torch.long, device=fresh.device)
        need = fresh | (self._queue_pos >= (c.execute_steps or c.action_chunk))
        n = int(need.sum())
        if n == b:
            chunk = self.predict_action_chunk(self._window(), goal)
            self._queue = self._keep_remainder(chunk, torch.ones_like(need), fresh)
            self._queue_pos.zero_()
        elif n:
            # Once episodes end at different steps the queues fall out of step: predict only for
            # the environments whose queue ran out, not for the whole batch.
            sub_goal = goal[need] if goal is not None else None
            chunk = self.predict_action_chunk(self._window(need), sub_goal)
            self._queue[need] = self._keep_remainder(chunk, need, fresh)
            self._queue_pos[need] = 0
        action = self._queue[torch.arange(b, device=fresh.device), self._queue_pos]
        self._queue_pos += 1
        return action

    def _keep_remainder(self, chunk: Tensor, rows: Tensor, fresh: Tensor) -> Tensor:
        """The new chunks (n, Ta, A) of envs `rows` (B,) bool, except where the family flagged one
        that did not decode (`invalid_rows`): such an env plays the unplayed rest of its previous
        chunk, its last action held, unless its episode just began (then the flagged chunk)."""
        invalid, self.invalid_rows = self.invalid_rows, None
        if invalid is None or self._queue is None:
            return chunk
        env = torch.nonzero(rows).flatten()
        replace = invalid & ~fresh[env]
        if not bool(replace.any()):
            return chunk
        ta = chunk.shape[1]
        steps = (self._queue_pos[env, None] + torch.arange(ta, device=chunk.device)).clamp_max(ta - 1)
        remainder = self._queue[env[:, None], steps]  # (n, Ta, A)
        self.count_fallback(int(replace.sum()))
        return torch.where(replace[:, None, None], remainder, chunk)

    def _from_ensemble(self, fresh: Tensor, goal: Tensor | None) -> Tensor:
        c = self.config
        chunk = self.predict_action_chunk(self._window(), goal)  # (B, Ta, A)
        invalid, self.invalid_rows = self.invalid_rows, None
        if self._ensemble is None:
            self._ensemble = (torch.zeros_like(chunk), torch.zeros(chunk.shape[:2], device=chunk.device))
        total, weight = self._ensemble
        total[fresh] = 0.0
        weight[fresh] = 0.0
        # The prediction made now for step t+k will be k steps old when it is used.
        w = torch.exp(
            -c.ensemble_decay * torch.arange(c.action_chunk, device=chunk.device, dtype=chunk.dtype)
        )
        w = w[None, :].expand(chunk.shape[0], -1)
        if invalid is not None:  # a chunk that did not decode joins no average (but an episode's first)
            skipped = invalid & ~fresh
            self.count_fallback(int(skipped.sum()))
            w = w * (~skipped).to(w.dtype)[:, None]
        total += chunk * w[..., None]
        weight += w
        # Nothing to average only where every chunk covering this step was skipped: the new one.
        action = torch.where(weight[:, :1] > 0, total[:, 0] / weight[:, :1].clamp_min(1e-30), chunk[:, 0])
        self._ensemble = (
            torch.cat([total[:, 1:], torch.zeros_like(total[:, :1])], dim=1),
            torch.cat([weight[:, 1:], torch.zeros_like(weight[:, :1])], dim=1),
        )
        return action
