"""The task-independent part of a MuJoCo Warp vector env: N worlds of one CPU env's model on a
Warp device, Gymnasium 1.x vector semantics (autoreset, reset masks, seeds), instability checks,
and the CPU model for rendering a few worlds.

A task subclass gives the action -> control map, the observation, its bookkeeping (rewards,
success, info) and its reset state; every array it sees is a torch tensor on `self.device` that
shares memory with the Warp data (`wp.to_torch`), so nothing is copied between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp
from gymnasium.vector import AutoresetMode, VectorEnv

from envs.warp import noise

MAX_VALUE = 1e10
"""MuJoCo's mjMAXVAL: a qpos, qvel or qacc beyond it is a bad state (mj_checkPos/Vel/Acc)."""
MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)


class WarpVectorEnv(VectorEnv):
    """`num_envs` worlds of `make_cpu_env()`'s model on Warp device `device`, `frame_skip` physics
    steps per env step, episodes truncated after `max_episode_steps`.

    `autoreset_mode`: NEXT_STEP (Gymnasium's default: the step after an episode ends resets that
    world and returns its first observation, reward 0) or DISABLED (reset finished worlds with
    `reset(options={"reset_mask": mask})`). `nconmax`, `njmax`: contacts and constraint rows
    allocated per world; a world that overflows them ends its episode as unstable, like a world whose
    state is not finite or beyond 1e10 (CPU MuJoCo's bad-state warnings), and its state is reset.
    """

    num_modes = 1
    progress_keys: tuple[str, ...] = ()

    def __init__(
        self,
        num_envs: int,
        make_cpu_env: Callable[..., Any],
        max_episode_steps: int,
        device: str = "cpu",
        nconmax: int | None = None,
        njmax: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        mode = AutoresetMode(autoreset_mode)
        if mode not in MODES:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in MODES]}, got {mode.value}")
        self.num_envs, self.max_episode_steps = num_envs, max_episode_steps
        self.metadata = {"autoreset_mode": mode}
        self.render_mode = None
        self._make_cpu_env = make_cpu_env
        self.cpu_env = make_cpu_env().unwrapped
        """The CPU env the worlds copy: the MuJoCo model, bounds, dt, frame_skip."""
        self.frame_skip, self.dt = int(self.cpu_env.frame_skip), float(self.cpu_env.dt)
        self.wp_device = wp.get_device(device)
        self.device = torch.device("cpu" if self.wp_device.is_cpu else f"cuda:{self.wp_device.ordinal}")
        mjm = self.cpu_env.model
        self._sizes = {"nconmax": nconmax, "njmax": njmax}
        with wp.ScopedDevice(self.wp_device):
            try:  # checks the model's features (integrator, solver, geoms, ...); compiles nothing
                self.model = mjw.put_model(mjm)
            except NotImplementedError as error:
                name = type(self.cpu_env).__name__
                raise ValueError(f"{name}: MuJoCo Warp does not support its model: {error}") from error
            self.data = mjw.make_data(mjm, nworld=num_envs, **self._sizes)
        self.qpos, self.qvel = wp.to_torch(self.data.qpos), wp.to_torch(self.data.qvel)
        self.qacc, self.ctrl = wp.to_torch(self.data.qacc), wp.to_torch(self.data.ctrl)
        self.overflow = wp.to_torch(self.data.overflow)
        self._graph: Any = None
        zeros = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.elapsed = zeros.clone()
        """Steps of each world's episode."""
        self.keys, self.counters = zeros.clone(), zeros.clone()
        """Noise key of each world's episode and index of its next observation (envs.warp.noise)."""
        self._autoreset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._last_obs: torch.Tensor | None = None
        self._seeded = False
        self._renderer: Any = None

    # -- physics ---------------------------------------------------------------------------
    def _sync_torch(self) -> None:
        """Torch writes (ctrl, qpos) reach Warp's stream: on CUDA the two use different streams."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _sync_warp(self) -> None:
        if self.device.type == "cuda":
            wp.synchronize_device(self.wp_device)

    def _simulate(self) -> None:
        """`frame_skip` physics steps of every world: one CUDA graph on a GPU (launching the few
        hundred kernels of a step from Python would cost more than running them)."""
        self._sync_torch()
        with wp.ScopedDevice(self.wp_device):
            if self.device.type != "cuda":
                for _ in range(self.frame_skip):
                    mjw.step(self.model, self.data)
                return
            if self._graph is None:
                self._load_kernels()
                with wp.ScopedCapture() as capture:
                    for _ in range(self.frame_skip):
                        mjw.step(self.model, self.data)
                self._graph = capture.graph
            wp.capture_launch(self._graph)
        self._sync_warp()

    def _load_kernels(self) -> None:
        """Compile and load every kernel of a step before a graph capture, which cannot load modules:
        one step of a one-world scratch copy, the real worlds untouched."""
        scratch = mjw.make_data(self.cpu_env.model, nworld=1, **self._sizes)
        mjw.step(self.model, scratch)
        wp.synchronize_device(self.wp_device)

    def _reset_physics(self, mask: torch.Tensor) -> None:
        """MuJoCo's mj_resetData for the worlds where `mask` (N,) bool: the model's defaults, warm
        start and overflow flags cleared."""
        if not bool(mask.any()):
            return
        self._sync_torch()
        with wp.ScopedDevice(self.wp_device):
            mjw.reset_data(self.model, self.data, reset=wp.from_torch(mask.contiguous(), dtype=wp.bool))
        self._sync_warp()

    def _bad_state(self) -> torch.Tensor:
        """(N,) bool: worlds whose state is not finite, beyond MAX_VALUE, or whose contacts or
        constraints overflowed the allocation."""
        bad = self.overflow != 0
        for value in (self.qpos, self.qvel, self.qacc):
            bad |= ~(torch.isfinite(value) & (value.abs() < MAX_VALUE)).all(dim=1)
        return bad

    # -- the task --------------------------------------------------------------------------
    def _apply_action(self, actions: torch.Tensor) -> None:
        """Write the controls of finite actions (N, A) into `self.ctrl`."""
        raise NotImplementedError

    def _task_reset(self, mask: torch.Tensor) -> None:
        """Set the initial state and clear the bookkeeping of the worlds where `mask`."""
        raise NotImplementedError

    def _task_step(self, stable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """After a physics step: update the bookkeeping of the `stable` worlds; (reward (N,) float32,
        success (N,) bool)."""
        raise NotImplementedError

    def _observe(self, keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
        """Observations (N, D) with the noise of episode `keys` at `counters`."""
        raise NotImplementedError

    def _info(self, unstable: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task's info: {key: (N, ...) tensor}."""
        raise NotImplementedError

    # -- gymnasium API ---------------------------------------------------------------------
    def _observation(self) -> torch.Tensor:
        obs = self._observe(self.keys, self.counters)
        self.counters += 1
        return obs

    def _vector_info(self, unstable: torch.Tensor) -> dict[str, Any]:
        """Gymnasium's vector info layout: every key with its `_key` mask (every world has all)."""
        info = self._info(unstable)
        info["unstable"] = unstable
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        info.update({f"_{k}": every for k in list(info)})
        return info

    def _start_episodes(self, mask: torch.Tensor, keys: torch.Tensor) -> None:
        self._reset_physics(mask)
        self._task_reset(mask)
        self.keys = torch.where(mask, keys, self.keys)
        self.counters[mask] = 0
        self.elapsed[mask] = 0
        self._autoreset &= ~mask

    def _seed_keys(self, seed: int | list[int | None] | None) -> torch.Tensor:
        """Noise keys (N,) of new episodes: seed + i per world for an int, one seed per world for a
        list (None: continue that world's sequence), fresh entropy the first time without a seed."""
        if seed is None and not self._seeded:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        if seed is None:
            return noise.next_keys(self.keys)
        single = isinstance(seed, (int, np.integer))
        seeds = [int(seed) + i for i in range(self.num_envs)] if single else list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} worlds")
        following = noise.next_keys(self.keys)
        given = [s if s is not None else 0 for s in seeds]
        keys = torch.as_tensor(noise.episode_keys(given), device=self.device)
        none = torch.tensor([s is None for s in seeds], device=self.device)
        self._seeded = True
        return torch.where(none, following, keys)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Start new episodes in every world, or in those of `options["reset_mask"]` (N,) bool (the
        others keep their state and their last observation). Returns (obs (N, D), info)."""
        options = dict(options or {})
        unknown = sorted(set(options) - {"reset_mask"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.reset: unknown option(s) {unknown}; it takes ['reset_mask']"
            )
        mask = options.get("reset_mask")
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask.shape != (self.num_envs,) or mask.dtype != torch.bool:
            raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},), got {mask.shape}")
        mask = mask.to(self.device)
        self._start_episodes(mask, self._seed_keys(seed))
        obs = self._observation()
        if self._last_obs is not None:
            obs = torch.where(mask[:, None], obs, self._last_obs)
        self._last_obs = obs
        return obs, self._vector_info(torch.zeros_like(mask))

    def step(
        self, actions: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step every world with actions (N, A): (obs (N, D) float32, reward (N,) float32,
        terminated (N,) bool, truncated (N,) bool, info), all tensors on `self.device`. A world
        whose action is not finite is not simulated with it and ends its episode as unstable."""
        if self._last_obs is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        actions = torch.as_tensor(actions, dtype=torch.float32).to(self.device)
        shape = (self.num_envs, *self.single_action_space.shape)
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape}, got {tuple(actions.shape)}")
        finite = torch.isfinite(actions).all(dim=1)
        self._apply_action(torch.where(finite[:, None], actions, 0.0))
        self._simulate()
        unstable = ~finite | self._bad_state()
        self._reset_physics(unstable)  # as CPU MuJoCo does on a bad state: the episode ends there
        reward, success = self._task_step(~unstable)
        self.elapsed += 1
        terminated = success | unstable
        truncated = self.elapsed >= self.max_episode_steps
        restart = self._autoreset.clone()
        if bool(restart.any()):  # NEXT_STEP: these worlds ended last step; this step starts them anew
            self._start_episodes(restart, noise.next_keys(self.keys))
            reward = torch.where(restart, 0.0, reward)
            terminated, truncated, unstable = (x & ~restart for x in (terminated, truncated, unstable))
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._autoreset = terminated | truncated
        info = self._vector_info(unstable)
        self._last_obs = self._observation()
        return self._last_obs, reward, terminated, truncated, info

    # -- rendering and state ---------------------------------------------------------------
    def world_state(self, worlds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(qpos (K, nq), qvel (K, nv)) float64 of `worlds`, on the host."""
        index = torch.as_tensor(worlds, dtype=torch.long, device=self.device)
        return (
            self.qpos[index].double().cpu().numpy(),
            self.qvel[index].double().cpu().numpy(),
        )

    def render_worlds(self, worlds: list[int]) -> list[np.ndarray]:
        """RGB frames (H, W, 3) uint8 of `worlds`, drawn by the CPU env's renderer from a copy of
        each world's state (the frames look as the CPU backend's do)."""
        if self._renderer is None:
            self._renderer = self._make_cpu_env(render_mode="rgb_array").unwrapped
            self._renderer.reset(seed=0)
        qpos, qvel = self.world_state(worlds)
        frames = []
        for q, v in zip(qpos, qvel, strict=True):
            self._renderer.set_state(q, v)  # runs mj_forward: the frame shows this state
            frames.append(self._renderer.render())
        return frames

    def close_extras(self, **kwargs: Any) -> None:
        for env in (self.cpu_env, self._renderer):
            if env is not None:
                env.close()
        self._renderer = None
