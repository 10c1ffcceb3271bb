"""The main job, `scripts/train.py`: check the config, the dataset (collected if missing) and the run
folder, then phase 1 (`fit_statistics`: normalisers, tokenizer or bins), phase 2 (`train_policy`),
evaluate the best checkpoint and write the report. Works on a plain nested dict (a resolved hydra
config)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml

from vqbet.checkpoint import read_json
from vqbet.data import EpisodeData, TrajectoryWindows, check_outliers, split_episodes
from vqbet.data.formats import detect_format
from vqbet.evaluate import evaluate
from vqbet.offline import evaluate_offline
from vqbet.pipeline.collect import collect
from vqbet.pipeline.config import RunConfig, check_run_config, config_differences
from vqbet.pipeline.evaluation import (
    DEMONSTRATION_KEYS,
    env_factory,
    evaluate_and_report,
    offline_and_report,
    read_task_data,
)
from vqbet.policies import Policy, load_policy, policy_class
from vqbet.report import plot_curves
from vqbet.train_policy import compile_network, resolve_device, setup_distributed, train_policy

TASK_DIMENSIONS = ("obs_dim", "action_dim", "obs_window", "action_chunk", "action_relative_to")
"""Policy config fields that every task config sets (once, for every family)."""


def build_policy(cfg: dict[str, Any]) -> Policy:
    """The policy family cfg["policy"]["name"] names, with every dimension from cfg["task"] and,
    for families that learn a tokenizer, cfg["tokenizer"]["model"]."""
    fields = dict(cfg["policy"])
    family = policy_class(fields.pop("name"))
    task = cfg["task"]
    fields.update({k: task[k] for k in TASK_DIMENSIONS if k in task})
    if task.get("cameras"):  # a pixel task: its cameras (and their encoder settings)
        fields["vision"] = {**fields.get("vision", {}), **task.get("vision", {}), "cameras": task["cameras"]}
    return family.build(fields, cfg.get("tokenizer", {}).get("model"))


def fit_phase_one(policy: Policy, run: RunConfig, windows: TrajectoryWindows, run_dir: Path) -> None:
    """Phase 1 (`policy.fit_statistics`), with the tokenizer's curves and a summary line."""
    print(f"phase 1: {policy.name} statistics on {len(windows)} windows")
    summary = policy.fit_statistics(
        windows, seed=run.train.seed, tokenizer_fit=run.tokenizer_fit, log_dir=run_dir / "tensorboard"
    )
    if "history" in summary:
        usage = sorted(k for k in summary if k.startswith("used_fraction/"))
        title = "tokenizer: fraction of codes used, per layer"
        plot_curves(summary["history"], usage, run_dir / "codebook_usage.png", title)
    if "reconstruction_loss" in summary:
        used = ", ".join(f"{100 * v:.0f}%" for k, v in summary.items() if k.startswith("used_fraction"))
        print(f"tokenizer: reconstruction {summary['reconstruction_loss']:.4f}, codes used {used}")


def _present(dataset: Path) -> bool:
    """Whether the dataset exists (a file, a folder, or a Minari dataset id)."""
    try:
        detect_format(dataset)
    except FileNotFoundError:
        return False
    return True


def with_data_dims(cfg: dict[str, Any]) -> tuple[dict[str, Any], EpisodeData | None]:
    """A task without a simulator (`env_id: null`, task=dataset) takes obs_dim and action_dim from
    its data, and its cameras' image size (and, unless set, a crop of 7/8 of it) from the frames:
    (the config with them filled in, the data read for it), else (cfg, None)."""
    task = cfg.get("task")
    if not isinstance(task, dict) or task.get("env_id") is not None or "dataset" not in task:
        return cfg, None
    data = read_task_data(task)
    dims: dict[str, Any] = {"obs_dim": int(data.obs.shape[1]), "action_dim": int(data.action.shape[1])}
    for key, have in dims.items():
        if task.get(key) not in (None, have):
            raise ValueError(f"{task['dataset']}: {key} is {have}, but the task config says {task[key]}")
    cameras = list(task.get("cameras") or [])
    missing = [c for c in cameras if c not in data.images]
    if missing:
        raise ValueError(
            f"{task['dataset']}: task.cameras {missing} are not in the data, which has cameras "
            f"{sorted(data.images)} (task.image_keys names them: {{camera: key in the dataset}})"
        )
    sizes = {tuple(data.images[c].shape[1:3]) for c in cameras}
    if len(sizes) > 1:
        raise ValueError(
            f"{task['dataset']}: cameras {cameras} differ in size {sorted(sizes)}; one size is taken"
        )
    if sizes:
        size = [int(x) for x in sizes.pop()]
        vision = dict(task.get("vision") or {})
        vision["image_size"] = size
        vision.setdefault("crop", [max(4, round(7 * x / 8)) for x in size])
        if data.env_state is not None:
            vision.setdefault("env_state_dim", int(data.env_state.shape[1]))
        dims["vision"] = vision
    return {**cfg, "task": {**task, **dims}}, data


def load_demonstrations(
    run: RunConfig, rank: int, world: int, preloaded: EpisodeData | None = None
) -> EpisodeData:
    """The task's dataset (any format `load_dataset` reads, with the task's `obs_keys` and
    `action_key` if it sets them), checked against the task (dims, recorded task id, outliers). A missing
    dataset is collected by the task's expert (rank 0) when it is the task's default path or
    `collect.new_path` is set; a mistyped path is an error, not a new dataset."""
    task, c = run.raw["task"], run.collect
    dataset = Path(task["dataset"])
    if preloaded is None and not _present(dataset):
        if task["env_id"] is None:
            raise FileNotFoundError(
                f"dataset {dataset} does not exist (and without an env there is no expert)"
            )
        default = task.get("default_dataset")
        if dataset != Path(default or "") and not c.new_path:
            raise FileNotFoundError(
                f"dataset {dataset} does not exist, and it is not the task's default ({default}): "
                f"nothing was collected. Check the path, or pass collect.new_path=true to collect "
                f"{c.episodes} expert episodes there."
            )
        if rank == 0:
            print(f"{dataset} is missing: collecting {c.episodes} expert episodes of {task['env_id']} first")
            collect(
                task["env_id"],
                c.episodes,
                dataset,
                workers=c.workers,
                perturb=c.perturb,
                perturb_hold=c.perturb_hold,
                env_kwargs=task.get("env_kwargs"),
            )
    if world > 1:
        torch.distributed.barrier()
    data = preloaded if preloaded is not None else read_task_data(task)
    if data.obs.shape[1] != task["obs_dim"] or data.action.shape[1] != task["action_dim"]:
        raise ValueError(
            f"{dataset}: obs/action dims {data.obs.shape[1]}/{data.action.shape[1]} do not match task "
            f"{task['name']} ({task['obs_dim']}/{task['action_dim']})"
        )
    recorded = data.attrs.get("task_id")
    mismatch = task["env_id"] is not None and recorded not in (None, task["env_id"])
    if mismatch and not run.data.allow_task_mismatch:
        raise ValueError(
            f"{dataset} holds demonstrations of {recorded}, but the task is {task['env_id']}; pass "
            "data.allow_task_mismatch=true to train on them anyway"
        )
    check_outliers(data, run.data.outlier_std)
    return data


def prepare_run_dir(run: RunConfig, content_hash: str) -> None:
    """Refuse to start where a run would be lost or mixed up: a fresh start over an existing run
    (unless `overwrite`), a resume whose config or dataset differs from the stored run's."""
    cfg, run_dir = run.raw, Path(run.raw["run_dir"])
    last = run_dir / "checkpoints" / "last"
    if not cfg["resume"]:
        if last.is_dir() and not cfg.get("overwrite", False):
            raise FileExistsError(
                f"{run_dir} already holds a run ({last}): pass resume=true to continue it, "
                "overwrite=true to start it over (its checkpoints are replaced), or another run_dir"
            )
        return
    stored = run_dir / "config.yaml"
    if stored.is_file():
        differences = config_differences(yaml.safe_load(stored.read_text()), cfg)
        if differences:
            listed = "\n".join(f"  - {d}" for d in differences)
            raise ValueError(f"resume=true, but the config differs from the run's own ({stored}):\n{listed}")
    if (last / "config.json").is_file():
        recorded = read_json(last).get("metadata", {}).get("demonstrations", {}).get("content_sha256")
        if recorded is not None and recorded != content_hash:
            raise ValueError(
                f"resume=true, but {cfg['task']['dataset']} is not the dataset {last} was trained on "
                "(its content hash differs)"
            )


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """The main job on a resolved config (configs/train.yaml); returns the evaluation results (an
    empty dict on ranks other than 0 under torchrun). Everything is checked (config, dataset, run
    folder) before the run folder is written."""
    started = time.perf_counter()
    cfg, preloaded = with_data_dims(cfg)
    run = check_run_config(cfg, build_policy)
    task, run_dir, seed = cfg["task"], Path(cfg["run_dir"]), int(cfg["seed"])
    # Under torchrun: join the process group first (gloo on CPU, NCCL on CUDA); rank 0 collects,
    # logs, evaluates and writes; every rank fits the same phase 1 from the same seed.
    device = resolve_device(run.train.device)
    rank, world, _ = setup_distributed(device)
    data = load_demonstrations(run, rank, world, preloaded)
    run.policy.check_env_state(data)  # before the run folder: a missing training target
    content_hash = data.content_hash()
    prepare_run_dir(run, content_hash)
    train_eps, val_eps = split_episodes(data.num_episodes, run.data.val_fraction, seed=seed)
    shape = dict(obs_window=int(task["obs_window"]), action_chunk=int(task["action_chunk"]))
    shape["cameras"] = list(task.get("cameras") or [])
    train_set = TrajectoryWindows(data, episodes=train_eps, **shape)
    val_set = TrajectoryWindows(data, episodes=val_eps, **shape) if len(val_eps) else None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f"run folder: {run_dir} ({world} process{'es' if world > 1 else ''})")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    torch.manual_seed(seed)
    policy = build_policy(cfg)  # afresh after the seed: the weights do not depend on the checks
    demonstrations = {k: data.attrs[k] for k in DEMONSTRATION_KEYS if k in data.attrs}
    demonstrations.update(path=str(task["dataset"]), content_sha256=content_hash)
    policy.metadata.update(task=task, demonstrations=demonstrations)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if rank == 0 else None
    if not (bool(cfg["resume"]) and (run_dir / "checkpoints" / "last").is_dir()):
        fit_phase_one(policy, run, train_set, run_dir)
    params = sum(p.numel() for p in policy.parameters())
    print(f"phase 2: {policy.name} on {len(train_set)} windows ({params:,} params)")
    offline, eval_cfg = task["env_id"] is None, run.eval
    env_kwargs = dict(task.get("env_kwargs") or {})
    make_env = None if offline else env_factory(task["env_id"], **env_kwargs)
    held_out = val_set or train_set  # offline metrics on held-out episodes when there are any

    def on_eval(acting: Policy, step: int) -> dict[str, float]:
        if eval_cfg.during_training <= 0:
            return {}
        was_training = acting.training
        acting.eval()
        if offline:
            m = evaluate_offline(acting, held_out, samples=5, max_windows=512, seed=seed)
            extra = {"greedy_nmse": m["greedy_nmse"], "best_of_5_nmse": m["best_of_5_nmse"]}
        else:
            n, envs = eval_cfg.during_training, eval_cfg.num_envs
            result = evaluate(acting, make_env, n, eval_cfg.first_seed, num_envs=envs, progress=False)
            extra = {"success_rate": result["summary"]["success_rate"]}
        acting.train(was_training)
        return extra

    state = train_policy(
        policy,
        train_set,
        val_set,
        run.train,
        run_dir,
        resume=bool(cfg["resume"]),
        log=(lambda k, v, s: writer.add_scalar(k, v, s)) if writer is not None else None,
        on_eval=on_eval,
    )
    if writer is None:  # ranks other than 0 are done: rank 0 evaluates and reports
        return {}
    writer.close()
    train_seconds = time.perf_counter() - started

    best = load_policy(
        run_dir / "checkpoints" / "best", obs_dim=task["obs_dim"], action_dim=task["action_dim"]
    )
    best.to(device)  # the simulator stays on the CPU
    if run.train.compile:
        compile_network(best)
    torch.manual_seed(seed)
    curves = ["greedy_nmse", "best_of_5_nmse"] if offline else ["success_rate"]
    plot_curves(state["history"], ["loss", "val_loss", *curves], run_dir / "curves.png", "training")
    extra = {
        "seed": seed,
        "train_seconds": train_seconds,
        "device": str(device),
        "parameters": params,
        "best_step": state.get("best_step"),
    }
    if offline:
        where = f"{len(val_eps)} held-out episodes" if val_set else "the training episodes (none held out)"
        print(f"evaluating {run_dir / 'checkpoints' / 'best'} offline on {where}")
        results = offline_and_report(best, held_out, run_dir, {**extra, "evaluated_on": where}, started)
    else:
        print(f"evaluating {run_dir / 'checkpoints' / 'best'} on {eval_cfg.episodes} episodes")
        results = evaluate_and_report(best, task["env_id"], eval_cfg, run_dir, extra, started, env_kwargs)
    print(f"{time.perf_counter() - started:.0f} s in all")
    return results
