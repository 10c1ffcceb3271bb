"""Evaluate a trained policy checkpoint: seeded rollouts, results.json, report.md, order histogram,
tiled video. scripts/train.py ends with the same function.

    python scripts/eval.py checkpoint=runs/multireach/vqbet-seed0/checkpoints/best
    python scripts/eval.py checkpoint=runs/blockpush/mlp-seed1/checkpoints/best eval.episodes=200
    python scripts/eval.py checkpoint=... act.execution=ensemble act.temperature=0.5 out=runs/x/eval/ens

The task defaults to the one the run was trained on (the run folder's config.yaml); naming another
task is an error, since a MultiReach and a PushT policy have the same input and output sizes.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import torch
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402, F401  (registers the tasks)
from vqbet.baselines import load_policy  # noqa: E402
from vqbet.data import read_hdf5  # noqa: E402
from vqbet.evaluate import evaluate  # noqa: E402
from vqbet.report import plot_orders, record_video, write_report  # noqa: E402
from vqbet.train_policy import compile_network, resolve_device  # noqa: E402

EVAL_SEED = 1_000_000  # disjoint from the demonstration seeds 0..episodes-1


def absolute(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def dataset_attrs(task: DictConfig) -> dict[str, Any]:
    """The demonstrations' metadata (expert success, mode histogram) when the dataset is at hand."""
    path = absolute(task.dataset)
    return dict(read_hdf5(path).attrs) if path.is_file() else {}


def evaluate_and_report(
    policy: torch.nn.Module,
    task: DictConfig,
    eval_cfg: DictConfig,
    out_dir: Path,
    name: str,
    attrs: dict[str, Any],
    extra: dict[str, Any],
    started: float | None = None,
) -> dict[str, Any]:
    """Evaluate `policy` on `task` (eval_cfg: episodes, num_envs, video_episodes) and write
    results.json, report.md, orders.png and rollouts.mp4 into `out_dir`. Returns the results;
    with `started` (a perf_counter time) they hold the seconds since then as total_seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def make_env(**kwargs: Any) -> gym.Env:
        return gym.make(task.env_id, disable_env_checker=True, **kwargs)

    first_seed = int(eval_cfg.get("first_seed", EVAL_SEED))
    result = evaluate(policy, make_env, int(eval_cfg.episodes), first_seed, num_envs=int(eval_cfg.num_envs))
    summary = result["summary"]
    results = {
        "policy": name,
        "env_id": task.env_id,
        "eval_seed": first_seed,
        "summary": summary,
        "episodes": result["episodes"],
        "expert_success_rate": attrs.get("expert_success_rate"),
        "expert_order_entropy": attrs.get("order_entropy"),
        "demonstrations_perturb": attrs.get("perturb", 0.0),
        **extra,
    }
    orders = [e["order"] for e in result["episodes"] if e["success"] and "order" in e]
    if "mode_histogram" in attrs:
        plot_orders(orders, attrs["mode_histogram"], out_dir / "orders.png", f"{name}: orders")
    if int(eval_cfg.video_episodes) > 0:
        record_video(policy, make_env, int(eval_cfg.video_episodes), first_seed, out_dir / "rollouts.mp4")
    if started is not None:
        results["total_seconds"] = time.perf_counter() - started
    report = write_report(out_dir, results)
    low, high = summary["success_ci95"]
    print(
        f"{name} on {task.env_id}: success {summary['success_rate']:.2f} ({low:.2f}-{high:.2f}), "
        f"order entropy {summary.get('order_entropy', 0.0):.3f}"
    )
    print(f"report: {report}")
    return results


def run(cfg: DictConfig, task_given: bool = False) -> dict[str, Any]:
    """Evaluate cfg.checkpoint; `task_given`: the user named a task, which must be the run's."""
    if cfg.checkpoint is None:
        raise ValueError("pass checkpoint=<run folder>/checkpoints/best (a policy checkpoint folder)")
    checkpoint = absolute(cfg.checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: not a policy checkpoint folder (no config.json)")
    run_config = checkpoint.parent.parent / "config.yaml"
    task, name = cfg.task, None
    if run_config.is_file():
        trained = OmegaConf.load(run_config)
        if task_given and trained.task.env_id != task.env_id:
            raise ValueError(
                f"{checkpoint} was trained on {trained.task.env_id} ({run_config}), not {task.env_id}"
            )
        task, name = trained.task, trained.policy.name
    device = resolve_device(str(cfg.device))
    policy = load_policy(checkpoint, obs_dim=task.obs_dim, action_dim=task.action_dim).to(device).eval()
    for key, value in cfg.act.items():  # acting options the checkpoint's config may be overridden with
        if value is not None:
            if not hasattr(policy.config, key):
                raise ValueError(f"act.{key}: {type(policy).__name__} has no such option")
            setattr(policy.config, key, value)
            policy.config.__post_init__()  # validates the new value
    if cfg.compile:
        compile_network(policy)
    out_dir = absolute(cfg.out) if cfg.out else checkpoint.parent.parent / "eval" / checkpoint.name
    torch.manual_seed(int(cfg.seed))
    print(f"evaluating {checkpoint} on {task.env_id}, {cfg.eval.episodes} episodes -> {out_dir}")
    started = time.perf_counter()
    extra = {"checkpoint": str(checkpoint), "device": str(device), "seed": int(cfg.seed)}
    extra["act"] = {k: v for k, v in cfg.act.items() if v is not None}
    name = name or type(policy).__name__
    results = evaluate_and_report(policy, task, cfg.eval, out_dir, name, dataset_attrs(task), extra)
    print(f"{time.perf_counter() - started:.0f} s")
    return results


@hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="eval")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().overrides.task
    run(cfg, task_given=any(o.split("=")[0].split(".")[0].lstrip("+~") == "task" for o in overrides))


if __name__ == "__main__":
    main()
