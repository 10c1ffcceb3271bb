"""Collect expert demonstrations into a vqbet HDF5 dataset: the expert of a task (from `envs`) runs
on seeded episodes in parallel processes; the file is written atomically with its metadata."""

from __future__ import annotations

import collections
import importlib.metadata
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

from vqbet.data.formats.hdf5 import HDF5Writer
from vqbet.evaluation.metrics import order_entropy
from vqbet.progress import Progress

_ENV: Any = None  # one env per worker process, reused across its episodes


def _worker_episode(job: tuple[str, dict, int, bool, float, int]) -> dict:
    global _ENV
    import gymnasium as gym

    import envs  # noqa: F401  (registers the tasks in this process)
    from envs.rollout import expert_episode

    env_id, env_kwargs, seed, images, perturb, perturb_hold = job
    if _ENV is None or (_ENV.spec.id, _ENV.spec.kwargs) != (env_id, env_kwargs):
        _ENV = gym.make(env_id, render_mode="rgb_array" if images else None, **env_kwargs)
    episode = expert_episode(_ENV, seed, images=images, perturb=perturb, perturb_hold=perturb_hold)
    episode.pop("info")
    return episode


def versions() -> dict[str, str]:
    """Versions of the packages that shape the demonstrations, for the dataset's metadata."""
    found = {}
    for name in ("vqbet", "mujoco", "gymnasium", "numpy", "h5py"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def collect(
    env_id: str,
    episodes: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 2,
    keep_failures: bool = False,
    images: bool = False,
    perturb: float = 0.0,
    perturb_hold: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Run the expert on seeds seed..seed+episodes-1 in `workers` processes and write the dataset
    atomically to `out` with its metadata. Returns the file's path. `perturb`/`perturb_hold`:
    DART-style noise on the executed actions (see envs.rollout.expert_episode). `env_kwargs` go to
    `gym.make` (e.g. obs_mode="pixels+agent", cameras=["top", "side"]: every camera is stored)."""
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.rollout import check_perturbation

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    check_perturbation(perturb, perturb_hold)  # before any worker starts
    env_kwargs = dict(env_kwargs or {})
    jobs = [(env_id, env_kwargs, seed + i, images, perturb, perturb_hold) for i in range(episodes)]
    probe = gym.make(env_id, **env_kwargs)  # bad kwargs fail here, before any worker starts
    num_modes = int(getattr(probe.unwrapped, "num_modes", 1))
    fps = probe.unwrapped.metadata.get("render_fps")
    probe.close()
    started = time.perf_counter()
    results = []  # per episode: success and order (its arrays go straight to the file)
    bar = Progress(f"collect {env_id}", episodes, enabled=progress, unit="episode")
    every = max(1, episodes // 10)
    if workers > 1 and str(getattr(sys.modules["__main__"], "__file__", "")).startswith("<"):
        # Spawned workers re-import __main__; from `python -` (stdin) they cannot, and a Pool
        # whose workers die at start replaces them forever: collect in this process instead.
        print(f"collect: __main__ is {sys.modules['__main__'].__file__}, so 1 process instead of {workers}")
        workers = 1
    # Episodes are written as they arrive: 1,000 PushT episodes with a 96x96 camera are 9 GB of
    # frames, which held in memory until the end killed collection on a 24 GB machine.
    with HDF5Writer(out) as writer:

        def received(episode: dict) -> None:
            results.append({"success": episode["success"], "order": episode["order"]})
            if keep_failures or episode["success"]:
                writer.append(episode)
            bar.update()
            if len(results) % every == 0 or len(results) == episodes:
                wins = sum(r["success"] for r in results)
                bar.log(len(results), {"expert success": f"{wins}/{len(results)}"})

        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                for episode in pool.imap(_worker_episode, jobs, chunksize=max(1, episodes // (8 * workers))):
                    received(episode)
        else:
            for job in jobs:
                received(_worker_episode(job))
        bar.close()
        seconds = time.perf_counter() - started
        kept_index = [i for i, r in enumerate(results) if keep_failures or r["success"]]
        if not kept_index:
            raise RuntimeError(f"{env_id}: the expert succeeded in none of {episodes} episodes")
        successes = [r for r in results if r["success"]]
        orders = [r["order"] for r in successes]
        histogram = collections.Counter(str(list(o)) for o in orders)
        writer.attrs.update(
            {
                "task_id": env_id,
                "fps": fps,
                "expert": f"envs.experts ({env_id})",
                "seeds": [seed, seed + episodes - 1],
                "kept_seeds": [seed + i for i in kept_index],
                "versions": versions(),
                "expert_success_rate": len(successes) / episodes,
                "episodes_attempted": episodes,
                "episodes_kept": len(kept_index),
                "mode_histogram": dict(histogram),
                "order_entropy": order_entropy(orders) if orders else 0.0,
                "max_order_entropy": math.log(num_modes),
                "collection_seconds": seconds,
                "images": images,
                "env_kwargs": env_kwargs,
                "perturb": perturb,
                "perturb_hold": perturb_hold,
            }
        )
    path = writer.final
    print(
        f"{env_id}: expert success {len(successes)}/{episodes}, kept {len(kept_index)} episodes "
        f"({writer.steps} steps), {len(histogram)} orders, entropy {writer.attrs['order_entropy']:.3f} "
        f"(uniform over {num_modes} modes: {math.log(num_modes):.3f}), {seconds:.1f} s -> {path}"
    )
    return path
