"""Collect expert demonstrations into a vqbet HDF5 dataset.

python scripts/collect.py task=blockpush episodes=1000 [workers=2 images=true keep_failures=true
    perturb=0.03 perturb_hold=5 out=...]

`perturb`/`perturb_hold` default to the task config's (BlockPush: DART demonstrations, 0.03 / 5;
the other tasks: none).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import collections
import importlib.metadata
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import gymnasium as gym
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402, F401  (registers the tasks)
from envs.rollout import check_perturbation, expert_episode  # noqa: E402
from vqbet.data import EpisodeData, write_hdf5  # noqa: E402
from vqbet.metrics import order_entropy  # noqa: E402

_ENV: gym.Env | None = None


def _worker_episode(job: tuple[str, int, bool, float, int]) -> dict:
    global _ENV
    env_id, seed, images, perturb, perturb_hold = job
    if _ENV is None or _ENV.spec.id != env_id:
        _ENV = gym.make(env_id, render_mode="rgb_array" if images else None)
    episode = expert_episode(_ENV, seed, images=images, perturb=perturb, perturb_hold=perturb_hold)
    episode.pop("info")
    return episode


def versions() -> dict[str, str]:
    names = ("vqbet", "mujoco", "gymnasium", "numpy", "h5py")
    found = {}
    for name in names:
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
    progress: bool = True,
) -> Path:
    """Run the expert on seeds seed..seed+episodes-1 in `workers` processes and write the dataset
    atomically to `out` with its metadata. Returns the file's path. `perturb`/`perturb_hold`:
    DART-style noise on the executed actions (see envs.rollout.expert_episode)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    check_perturbation(perturb, perturb_hold)  # before any worker starts
    jobs = [(env_id, seed + i, images, perturb, perturb_hold) for i in range(episodes)]
    probe = gym.make(env_id)
    num_modes = int(getattr(probe.unwrapped, "num_modes", 1))
    probe.close()
    started = time.perf_counter()
    results = []
    bar = tqdm(
        total=episodes, desc=f"collect {env_id}", disable=None if progress else True, dynamic_ncols=True
    )
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for episode in pool.imap(_worker_episode, jobs, chunksize=max(1, episodes // (8 * workers))):
                results.append(episode)
                bar.update()
    else:
        for job in jobs:
            results.append(_worker_episode(job))
            bar.update()
    bar.close()
    seconds = time.perf_counter() - started
    kept_index = [i for i, r in enumerate(results) if keep_failures or r["success"]]
    kept = [results[i] for i in kept_index]
    if not kept:
        raise RuntimeError(f"{env_id}: the expert succeeded in none of {episodes} episodes")
    successes = [r for r in results if r["success"]]
    orders = [r["order"] for r in successes]
    histogram = collections.Counter(str(list(o)) for o in orders)
    attrs = {
        "task_id": env_id,
        "expert": f"envs.experts ({env_id})",
        "seeds": [seed, seed + episodes - 1],
        "kept_seeds": [seed + i for i in kept_index],
        "versions": versions(),
        "expert_success_rate": len(successes) / episodes,
        "episodes_attempted": episodes,
        "episodes_kept": len(kept),
        "mode_histogram": dict(histogram),
        "order_entropy": order_entropy(orders) if orders else 0.0,
        "max_order_entropy": math.log(num_modes),
        "collection_seconds": seconds,
        "images": images,
        "perturb": perturb,
        "perturb_hold": perturb_hold,
    }
    data = EpisodeData.from_episodes(
        [{k: r[k] for k in ("obs", "action", "image") if k in r} for r in kept], attrs=attrs
    )
    path = write_hdf5(out, data)
    print(
        f"{env_id}: expert success {len(successes)}/{episodes}, kept {len(kept)} episodes "
        f"({data.num_steps} steps), {len(histogram)} orders, entropy {attrs['order_entropy']:.3f} "
        f"(uniform over {num_modes} modes: {math.log(num_modes):.3f}), {seconds:.1f} s -> {path}"
    )
    return path


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="collect")
    def run(cfg: DictConfig) -> None:
        out = Path(cfg.out)
        if not out.is_absolute():
            out = ROOT / out
        collect(
            cfg.task.env_id,
            int(cfg.episodes),
            out,
            seed=int(cfg.seed),
            workers=int(cfg.workers),
            keep_failures=bool(cfg.keep_failures),
            images=bool(cfg.images),
            perturb=float(cfg.perturb),
            perturb_hold=int(cfg.perturb_hold),
        )

    run()


if __name__ == "__main__":
    main()
