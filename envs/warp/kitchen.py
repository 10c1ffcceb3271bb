"""Kitchen on MuJoCo Warp: `envs.kitchen.KitchenEnv`'s task for N worlds at once.

Everything task-specific comes from the CPU env (its MJCF, bounds, noise amplitudes, initial
state) and from envs.kitchen's constants (TASKS, goals, threshold, action scale), so the two
backends cannot drift apart in what the task is. The differences: float32 state (Warp's), and
observation noise drawn by envs.warp.noise instead of the env's numpy generator (same distribution,
other draws).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from gymnasium.spaces import Box
from gymnasium.vector.utils import batch_space

from envs import TASKS as REGISTERED
from envs.kitchen import (
    ACTION_SCALE,
    BONUS_THRESH,
    OBS_ELEMENT_GOALS,
    OBS_ELEMENT_INDICES,
    TASKS,
    KitchenEnv,
)
from envs.warp import noise
from envs.warp.vector import WarpVectorEnv

NCONMAX = 64
"""Contacts allocated per world: the scripted expert's 20 seeds peak at 23 on CPU MuJoCo."""
NJMAX = 384
"""Constraint rows allocated per world: those episodes peak at 236 (pyramidal cones of condim 4
and 6 take 6 and 10 rows a contact); Warp's default (64) would overflow."""


class KitchenWarpVectorEnv(WarpVectorEnv):
    """Kitchen (envs.kitchen) in `num_envs` MuJoCo Warp worlds: observations (N, 59), actions
    (N, 9), reward = sub-tasks completed this step, terminated on success or instability, truncated
    after `max_episode_steps` (the registered 600 by default; `gym.make` takes the same keyword, so
    a task's env_kwargs mean the same on both backends). info: "is_success", "tasks_completed",
    "p1".."p4", "unstable" (N,) and "order" (N, 4) int64, the completion order as indices into
    TASKS, -1 past the last done."""

    num_modes = KitchenEnv.num_modes
    progress_keys = KitchenEnv.progress_keys

    def __init__(
        self,
        num_envs: int,
        device: str = "cpu",
        robot_noise_ratio: float = 0.01,
        object_noise_ratio: float = 0.0005,
        max_episode_steps: int | None = None,
        nconmax: int = NCONMAX,
        njmax: int = NJMAX,
        **kwargs: Any,
    ) -> None:
        make = functools.partial(
            KitchenEnv, robot_noise_ratio=robot_noise_ratio, object_noise_ratio=object_noise_ratio
        )
        steps = REGISTERED["Kitchen"][1] if max_episode_steps is None else max_episode_steps
        super().__init__(num_envs, make, steps, device=device, nconmax=nconmax, njmax=njmax, **kwargs)
        env = self.cpu_env
        self.single_observation_space = Box(-np.inf, np.inf, shape=(59,), dtype=np.float32)
        self.single_action_space = env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        def tensor(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

        self.vel_low, self.vel_high = tensor(env.vel_bound[:, 0]), tensor(env.vel_bound[:, 1])
        self.pos_low, self.pos_high = tensor(env.pos_bound[:, 0]), tensor(env.pos_bound[:, 1])
        pos_amp, vel_amp = env.noise_amplitudes()
        self.pos_amp, self.vel_amp = tensor(pos_amp), tensor(vel_amp)
        self.init_qpos, self.init_qvel = tensor(env.init_qpos), tensor(env.init_qvel)
        # The sub-tasks' object joints, padded to 2 by repeating a joint whose error is masked out.
        width = max(len(OBS_ELEMENT_INDICES[t]) for t in TASKS)
        index = [np.resize(OBS_ELEMENT_INDICES[t], width) for t in TASKS]
        goal = [np.resize(OBS_ELEMENT_GOALS[t], width) for t in TASKS]
        used = [np.arange(width) < len(OBS_ELEMENT_INDICES[t]) for t in TASKS]
        self.task_index, self.task_goal = tensor(index, torch.long), tensor(goal)
        self.task_used = tensor(used, torch.bool)
        n, k = num_envs, len(TASKS)
        self.done = torch.zeros(n, k, dtype=torch.bool, device=self.device)
        """(N, 4) which sub-tasks each world has completed."""
        self.order = torch.full((n, k), -1, dtype=torch.long, device=self.device)
        """(N, 4) completion order (indices into TASKS), -1 past the last completed."""

    def task_distances(self) -> torch.Tensor:
        """(N, 4) L2 distance of each sub-task's object joints to their goal (KitchenEnv.task_distance)."""
        error = (self.qpos[:, self.task_index] - self.task_goal) * self.task_used
        return torch.linalg.vector_norm(error, dim=-1)

    def _apply_action(self, actions: torch.Tensor) -> None:
        # KitchenEnv.step: a joint velocity, integrated from the true joint positions over one step.
        velocity = torch.clamp(ACTION_SCALE * actions.clamp(-1.0, 1.0), self.vel_low, self.vel_high)
        self.ctrl.copy_(torch.clamp(self.qpos[:, :9] + velocity * self.dt, self.pos_low, self.pos_high))

    def _task_reset(self, mask: torch.Tensor) -> None:
        rows = mask[:, None]
        self.qpos.copy_(torch.where(rows, self.init_qpos, self.qpos))
        self.qvel.copy_(torch.where(rows, self.init_qvel, self.qvel))
        self.done &= ~rows
        self.order.masked_fill_(rows, -1)

    def _task_step(self, stable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        newly = stable[:, None] & ~self.done & (self.task_distances() < BONUS_THRESH)
        slots = torch.arange(len(TASKS), device=self.device)
        count = self.done.sum(dim=1)
        # KitchenEnv._update_completions appends the sub-tasks done in one step in TASKS order.
        for task in range(len(TASKS)):
            here = newly[:, task]
            self.order.masked_fill_(here[:, None] & (slots == count[:, None]), task)
            count = count + here
        self.done |= newly
        return newly.sum(dim=1).to(torch.float32), self.done.all(dim=1)

    def _observe(self, keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
        nq = self.qpos.shape[1]
        u = noise.uniform(keys, counters, nq + self.qvel.shape[1])
        qpos = self.qpos + self.pos_amp * u[:, :nq]
        qvel = self.qvel + self.vel_amp * u[:, nq:]
        # KitchenEnv._get_obs's layout: robot positions, robot velocities, objects' of each.
        return torch.cat([qpos[:, :9], qvel[:, :9], qpos[:, 9:], qvel[:, 9:]], dim=1)

    def _info(self, unstable: torch.Tensor) -> dict[str, torch.Tensor]:
        count = self.done.sum(dim=1)
        info = {
            "is_success": self.done.all(dim=1) & ~unstable,
            "tasks_completed": count,
            "order": self.order.clone(),
        }
        for k in range(1, len(TASKS) + 1):
            info[f"p{k}"] = count >= k
        return info
