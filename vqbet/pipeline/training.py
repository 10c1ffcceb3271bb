"""The main job, `scripts/train.py`: collect demonstrations if missing, phase 1 (`fit_statistics`:
normalisers, tokenizer or bins), phase 2 (`train_policy`), then evaluate the best checkpoint and
write the report. Works on a plain nested dict (a resolved hydra config)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from vqbet.config import config_from_dict
from vqbet.data import EpisodeData, TrajectoryWindows, read_hdf5, split_episodes
from vqbet.evaluate import evaluate
from vqbet.pipeline.collect import collect
from vqbet.pipeline.evaluation import DEMONSTRATION_KEYS, EVAL_SEED, env_factory, evaluate_and_report
from vqbet.policies import Policy, load_policy, policy_class
from vqbet.report import plot_curves
from vqbet.train import TokenizerFitConfig
from vqbet.train_policy import (
    PolicyTrainConfig,
    compile_network,
    resolve_device,
    setup_distributed,
    train_policy,
)

TASK_DIMENSIONS = ("obs_dim", "action_dim", "obs_window", "action_chunk", "action_relative_to")
"""Policy config fields that every task config sets (once, for every family)."""


def build_policy(cfg: dict[str, Any]) -> Policy:
    """The policy family cfg["policy"]["name"] names, with every dimension from cfg["task"] and,
    for families that learn a tokenizer, cfg["tokenizer"]["model"]."""
    fields = dict(cfg["policy"])
    family = policy_class(fields.pop("name"))
    fields.update({k: cfg["task"][k] for k in TASK_DIMENSIONS if k in cfg["task"]})
    return family.build(fields, cfg.get("tokenizer", {}).get("model"))


def fit_phase_one(policy: Policy, cfg: dict[str, Any], windows: TrajectoryWindows, run_dir: Path) -> None:
    """Phase 1 (`policy.fit_statistics`), with the tokenizer's curves and a summary line."""
    print(f"phase 1: {policy.name} statistics on {len(windows)} windows")
    fit = (
        config_from_dict(TokenizerFitConfig, cfg["tokenizer"]["fit"], "tokenizer.fit")
        if "tokenizer" in cfg
        else None
    )
    summary = policy.fit_statistics(
        windows, seed=int(cfg["seed"]), tokenizer_fit=fit, log_dir=run_dir / "tensorboard"
    )
    if "history" in summary:
        usage = sorted(k for k in summary if k.startswith("used_fraction/"))
        title = "tokenizer: fraction of codes used, per layer"
        plot_curves(summary["history"], usage, run_dir / "codebook_usage.png", title)
    if "reconstruction_loss" in summary:
        used = ", ".join(f"{100 * v:.0f}%" for k, v in summary.items() if k.startswith("used_fraction"))
        print(f"tokenizer: reconstruction {summary['reconstruction_loss']:.4f}, codes used {used}")


def load_demonstrations(cfg: dict[str, Any], rank: int, world: int) -> EpisodeData:
    """The task's dataset; rank 0 collects it with the task's expert first when it is missing."""
    task, dataset = cfg["task"], Path(cfg["task"]["dataset"])
    if rank == 0 and not dataset.is_file():
        print(f"{dataset} is missing: collecting {cfg['collect']['episodes']} expert episodes first")
        c = cfg["collect"]
        collect(
            task["env_id"],
            int(c["episodes"]),
            dataset,
            seed=0,
            workers=int(c["workers"]),
            perturb=float(c["perturb"]),
            perturb_hold=int(c["perturb_hold"]),
        )
    if world > 1:
        torch.distributed.barrier()
    data = read_hdf5(dataset)
    if data.obs.shape[1] != task["obs_dim"] or data.action.shape[1] != task["action_dim"]:
        raise ValueError(
            f"{dataset}: obs/action dims {data.obs.shape[1]}/{data.action.shape[1]} do not match task "
            f"{task['name']} ({task['obs_dim']}/{task['action_dim']})"
        )
    return data


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """The main job on a resolved config (configs/train.yaml); returns the evaluation results (an
    empty dict on ranks other than 0 under torchrun)."""
    import yaml

    started = time.perf_counter()
    # Under torchrun: join the process group first (gloo on CPU, NCCL on CUDA); rank 0 collects,
    # logs, evaluates and writes; every rank fits the same phase 1 from the same seed.
    device = resolve_device(str(cfg["train"]["device"]))
    rank, world, _ = setup_distributed(device)
    task, run_dir, seed = cfg["task"], Path(cfg["run_dir"]), int(cfg["seed"])
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        print(f"run folder: {run_dir} ({world} process{'es' if world > 1 else ''})")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    data = load_demonstrations(cfg, rank, world)
    train_eps, val_eps = split_episodes(data.num_episodes, float(cfg["data"]["val_fraction"]), seed=seed)
    shape = dict(obs_window=int(task["obs_window"]), action_chunk=int(task["action_chunk"]))
    train_set = TrajectoryWindows(data, episodes=train_eps, **shape)
    val_set = TrajectoryWindows(data, episodes=val_eps, **shape) if len(val_eps) else None

    torch.manual_seed(seed)
    policy = build_policy(cfg)
    policy.metadata.update(
        task=task, demonstrations={k: data.attrs[k] for k in DEMONSTRATION_KEYS if k in data.attrs}
    )
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if rank == 0 else None
    if not (bool(cfg["resume"]) and (run_dir / "checkpoints" / "last").is_dir()):
        fit_phase_one(policy, cfg, train_set, run_dir)
    params = sum(p.numel() for p in policy.parameters())
    print(f"phase 2: {policy.name} on {len(train_set)} windows ({params:,} params)")
    make_env, eval_cfg = env_factory(task["env_id"]), cfg["eval"]

    def on_eval(acting: Policy, step: int) -> dict[str, float]:
        if int(eval_cfg["during_training"]) <= 0:
            return {}
        was_training = acting.training
        acting.eval()
        n, envs = int(eval_cfg["during_training"]), int(eval_cfg["num_envs"])
        result = evaluate(acting, make_env, n, EVAL_SEED, num_envs=envs, progress=False)
        acting.train(was_training)
        return {"success_rate": result["summary"]["success_rate"]}

    state = train_policy(
        policy,
        train_set,
        val_set,
        config_from_dict(PolicyTrainConfig, {**cfg["train"], "seed": seed}, "train"),
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
    if cfg["train"]["compile"]:
        compile_network(best)
    print(f"evaluating {run_dir / 'checkpoints' / 'best'} on {eval_cfg['episodes']} episodes")
    torch.manual_seed(seed)
    plot_curves(state["history"], ["loss", "val_loss", "success_rate"], run_dir / "curves.png", "training")
    extra = {
        "seed": seed,
        "train_seconds": train_seconds,
        "device": str(device),
        "parameters": params,
        "best_step": state.get("best_step"),
    }
    results = evaluate_and_report(best, task["env_id"], eval_cfg, run_dir, extra, started)
    print(f"{time.perf_counter() - started:.0f} s in all")
    return results
