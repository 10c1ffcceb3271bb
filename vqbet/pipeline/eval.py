"""Evaluate a policy on its task and write the run's report: seeded vectorised rollouts,
results.json, report.md, the completion-order histogram and a tiled video."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vqbet.checks import config_from_dict
from vqbet.data import TrajectoryWindows, read_hdf5
from vqbet.evaluation.offline import evaluate_offline
from vqbet.evaluation.report import plot_orders, record_video, write_offline_report, write_report
from vqbet.evaluation.rollouts import evaluate
from vqbet.io.run_dir import RunDir, undone_if_disk_full, writer_lock
from vqbet.pipeline.config import EvalConfig
from vqbet.pipeline.task import TaskConfig, env_factory, read_task_data
from vqbet.pipeline.warp_backend import check_backend, evaluate_on_warp
from vqbet.policies import Policy, load_policy
from vqbet.training import compile_network, resolve_device

OFFLINE_SAMPLES = 10
"""Sampled chunks per window for the best-of-N error of an offline evaluation."""
DEMONSTRATION_KEYS = ("expert_success_rate", "order_entropy", "mode_histogram", "perturb")
"""Dataset metadata a checkpoint keeps, so that a run copied without its dataset still reports
the expert reference."""


def label(policy: Policy) -> str:
    """What reports call a policy: its named configuration (e.g. "bet"), else its family."""
    return str(policy.metadata.get("configuration") or policy.name)


def check_env_fits(policy: Policy, make_env: Callable[..., Any], env_id: str) -> None:
    """Raise ValueError, before any episode runs, when the env's observations are not what the
    policy takes: its state size, and every camera the policy sees at the policy's image size."""
    env = make_env()
    try:
        space = env.observation_space
    finally:
        env.close()
    spaces = dict(space.spaces) if hasattr(space, "spaces") else {"state": space}
    vision = policy.config.vision
    state = spaces.get("state")
    state_dim = int(state.shape[0]) if state is not None else 0
    if state_dim != policy.config.obs_dim:
        raise ValueError(
            f"{env_id}: observations hold a state of {state_dim}, the policy takes {policy.config.obs_dim}"
        )
    cameras = {k: tuple(v.shape) for k, v in spaces.items() if k != "state"}
    missing = [c for c in vision.cameras if c not in cameras]
    if missing:
        raise ValueError(
            f"{env_id}: the policy sees cameras {vision.cameras}, the env gives {sorted(cameras)} (missing "
            f"{missing}); set the task's env_kwargs (obs_mode, cameras) to the policy's"
        )
    for camera in vision.cameras:
        if cameras[camera] != (*vision.image_size, 3):
            raise ValueError(
                f"{env_id}: camera {camera!r} renders {cameras[camera]}, the policy was trained on "
                f"{(*vision.image_size, 3)} (vision.image_size); make the env with that width and height"
            )


def dataset_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The demonstrations' metadata (expert success, mode histogram, ...) when the file exists."""
    return dict(read_hdf5(path).attrs) if Path(path).is_file() else {}


def evaluate_and_report(
    policy: Policy,
    env_id: str,
    eval_cfg: EvalConfig,
    out_dir: Path,
    extra: dict[str, Any],
    started: float | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `policy` on `env_id` made with `env_kwargs` (episodes, num_envs, video_episodes,
    first_seed, max_episode_steps, backend of `eval_cfg`) and write results.json, report.md,
    orders.png and rollouts.mp4 into `out_dir`. The expert reference comes from the policy's
    recorded demonstrations metadata. Returns the results; with `started` (a perf_counter time)
    they hold the seconds since then as total_seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env_kwargs = eval_cfg.env_kwargs(env_kwargs)
    make_env = env_factory(env_id, **env_kwargs)
    attrs = policy.metadata.get("demonstrations", {})
    first_seed = eval_cfg.first_seed
    policy.reset_decode_stats()
    if eval_cfg.backend == "warp":  # the video comes from the evaluated worlds themselves
        result = evaluate_on_warp(policy, env_id, eval_cfg, out_dir, env_kwargs)
    else:
        check_env_fits(policy, make_env, env_id)
        result = evaluate(policy, make_env, eval_cfg.episodes, first_seed, num_envs=eval_cfg.num_envs)
        num_envs = min(eval_cfg.num_envs, eval_cfg.episodes)
        result["backend"] = {"name": "cpu", "device": "cpu", "num_envs": num_envs}
    summary = result["summary"]
    decoding = policy.decode_stats()  # token sequences that did not decode (autoregressive families)
    results = {
        "policy": label(policy),
        "env_id": env_id,
        "eval_seed": first_seed,
        "summary": summary,
        "episodes": result["episodes"],
        "expert_success_rate": attrs.get("expert_success_rate"),
        "expert_order_entropy": attrs.get("order_entropy"),
        "demonstrations_perturb": attrs.get("perturb", 0.0),
        "backend": result["backend"],
        **({"max_episode_steps": eval_cfg.max_episode_steps} if eval_cfg.max_episode_steps else {}),
        **({"decoding": decoding} if decoding else {}),
        **extra,
    }
    orders = [e["order"] for e in result["episodes"] if e["success"] and "order" in e]
    if "mode_histogram" in attrs:
        plot_orders(orders, attrs["mode_histogram"], out_dir / "orders.png", f"{label(policy)}: orders")
    if eval_cfg.video_episodes > 0 and eval_cfg.backend == "cpu":
        record_video(policy, make_env, eval_cfg.video_episodes, first_seed, out_dir / "rollouts.mp4")
    if started is not None:
        results["total_seconds"] = time.perf_counter() - started
    report = write_report(out_dir, results)
    low, high = summary["success_ci95"]
    print(
        f"{label(policy)} on {env_id}: success {summary['success_rate']:.2f} ({low:.2f}-{high:.2f}), "
        f"order entropy {summary.get('order_entropy', 0.0):.3f}"
    )
    print(f"report: {report}")
    return results


def offline_and_report(
    policy: Policy,
    windows: TrajectoryWindows,
    out_dir: Path,
    extra: dict[str, Any],
    started: float | None = None,
) -> dict[str, Any]:
    """Judge `policy` on demonstration `windows` (vqbet.evaluation.offline) and write results.json and
    report.md into `out_dir`: the evaluation of a task without a simulator."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_offline(policy, windows, samples=OFFLINE_SAMPLES)
    results = {
        "policy": label(policy),
        "mode": "offline",
        "dataset": policy.metadata.get("task", {}).get("dataset"),
        "offline": metrics,
        **extra,
    }
    if started is not None:
        results["total_seconds"] = time.perf_counter() - started
    report = write_offline_report(out_dir, results)
    best = f"best_of_{OFFLINE_SAMPLES}_nmse"
    print(
        f"{label(policy)} offline: greedy chunk normalised MSE {metrics['greedy_nmse']:.4f}, best of "
        f"{OFFLINE_SAMPLES} {metrics[best]:.4f} on {metrics['windows']} windows"
    )
    print(f"report: {report}")
    return results


def _trained_task(policy: Policy, checkpoint: Path) -> tuple[TaskConfig | None, str]:
    """The task a checkpoint was trained on, as the training job recorded it (None for a
    checkpoint saved outside it), and where that record is."""
    source = str(checkpoint / "config.json")
    task = policy.metadata.get("task")
    return (TaskConfig.from_dict(task, f"{source}: metadata.task") if task else None), source


def _check_same_task(trained: TaskConfig, given: TaskConfig, checkpoint: Path, source: str) -> None:
    """A task named at evaluation must be the one the checkpoint records in what evaluation uses
    (the env and its arguments; the dataset for an offline task): an override that differs is an
    error, never dropped in favour of the recorded task."""
    if trained.env_id != given.env_id:
        raise ValueError(
            f"{checkpoint} was trained on {trained.env_id} ({source}), not {given.env_id}; "
            "pass allow_other_task=true to evaluate it there anyway"
        )
    used = {f"env_kwargs.{k}": v for k, v in trained.env_kwargs.items()}
    asked = {f"env_kwargs.{k}": v for k, v in given.env_kwargs.items()}
    if trained.env_id is None:
        used["dataset"], asked["dataset"] = trained.dataset, given.dataset
    differ = [k for k in sorted(set(used) | set(asked)) if used.get(k) != asked.get(k)]
    if differ:
        detail = ", ".join(f"task.{k}={asked.get(k)!r} (trained with {used.get(k)!r})" for k in differ)
        raise ValueError(
            f"{checkpoint}: {detail} differ from the task it was trained on ({source}); drop the "
            "override to evaluate on that task, or pass allow_other_task=true to evaluate on yours"
        )


def _evaluate_offline_checkpoint(
    policy: Policy, task: TaskConfig, checkpoint: Path, cfg: dict[str, Any], device: Any
) -> dict[str, Any]:
    """An offline checkpoint: every episode of its task's dataset, offline metrics."""
    data = read_task_data(task)
    windows = TrajectoryWindows(
        data, task.obs_window, task.action_chunk, cameras=list(policy.config.vision.cameras)
    )
    out_dir, _ = _report_folder(cfg, checkpoint)
    torch.manual_seed(int(cfg["seed"]))
    where = f"all {data.num_episodes} episodes of {task.dataset}"
    print(f"evaluating {checkpoint} offline on {where} -> {out_dir}")
    extra = {"checkpoint": str(checkpoint), "device": str(device), "evaluated_on": where}
    return offline_and_report(policy, windows, out_dir, extra)


def _report_folder(cfg: dict[str, Any], checkpoint: Path) -> tuple[Path, Path]:
    """(where the report goes, the folder whose writer lock covers it): `out` itself when given,
    else `<run>/eval/<checkpoint>` under the lock of its run folder."""
    if cfg.get("out"):
        return Path(cfg["out"]), Path(cfg["out"])
    run = RunDir.of_checkpoint(checkpoint)
    return run.evaluation(checkpoint), run.root


def evaluate_checkpoint(cfg: dict[str, Any], task_given: bool = False) -> dict[str, Any]:
    """scripts/eval.py (see `_evaluate_checkpoint`), as the one writer of the report's folder."""
    checkpoint = Path(cfg["checkpoint"]) if cfg.get("checkpoint") is not None else None
    if checkpoint is None or not (checkpoint / "config.json").is_file():
        return _evaluate_checkpoint(cfg, task_given)  # names the problem before any folder is made
    out_dir, locked = _report_folder(cfg, checkpoint)
    fresh = not out_dir.exists()
    with writer_lock(locked, "evaluation"), undone_if_disk_full(out_dir, created=fresh):
        return _evaluate_checkpoint(cfg, task_given)


def _evaluate_checkpoint(cfg: dict[str, Any], task_given: bool = False) -> dict[str, Any]:
    """scripts/eval.py: evaluate cfg["checkpoint"] on the task it was trained on. `task_given`:
    the user named a task, which must be that one (a MultiReach and a PushT policy have the same
    input and output sizes, so nothing else would catch it). cfg["act"] overrides acting options."""
    if cfg.get("checkpoint") is None:
        raise ValueError("pass checkpoint=<run folder>/checkpoints/best (a policy checkpoint folder)")
    checkpoint = Path(cfg["checkpoint"])
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: not a policy checkpoint folder (no config.json)")
    eval_cfg = config_from_dict(EvalConfig, cfg["eval"], "eval")
    device = resolve_device(str(cfg["device"]))
    policy = load_policy(checkpoint).to(device).eval()
    task, source = _trained_task(policy, checkpoint)
    given = TaskConfig.from_dict(cfg["task"], "task")
    if task is None or (task_given and cfg.get("allow_other_task")):
        task = given
    elif task_given:
        _check_same_task(task, given, checkpoint, source)
    for name in ("obs_dim", "action_dim"):
        if getattr(policy.config, name) != getattr(task, name):
            raise ValueError(
                f"{checkpoint}: {name}={getattr(policy.config, name)}, task {task.env_id} has "
                f"{getattr(task, name)}"
            )
    if task.env_id is None:  # trained without a simulator: judged on its demonstrations
        return _evaluate_offline_checkpoint(policy, task, checkpoint, cfg, device)
    check_backend(eval_cfg, task.env_id)  # an unsupported task is named before anything compiles
    if "demonstrations" not in policy.metadata:  # saved outside the training job: the dataset's, if here
        policy.metadata["demonstrations"] = dataset_attrs(task.dataset)
    overrides = {k: v for k, v in cfg["act"].items() if v is not None}
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(policy.config)})
    if unknown:
        raise ValueError(f"act.{unknown[0]}: {type(policy).__name__} has no such option")
    policy.config = dataclasses.replace(policy.config, **overrides)  # validated like any config
    if cfg.get("compile"):
        compile_network(policy)
    out_dir, _ = _report_folder(cfg, checkpoint)
    torch.manual_seed(int(cfg["seed"]))
    print(f"evaluating {checkpoint} on {task.env_id}, {eval_cfg.episodes} episodes -> {out_dir}")
    started = time.perf_counter()
    extra = {"checkpoint": str(checkpoint), "device": str(device), "seed": int(cfg["seed"]), "act": overrides}
    results = evaluate_and_report(policy, task.env_id, eval_cfg, out_dir, extra, env_kwargs=task.env_kwargs)
    print(f"{time.perf_counter() - started:.0f} s")
    return results
