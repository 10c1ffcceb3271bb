"""The main job, `scripts/train.py`: check the config, the dataset (collected if missing) and the run
folder, then phase 1 (`fit_statistics`: normalisers, tokenizer or bins), phase 2 (`train_policy`),
evaluate the best checkpoint and write the report. Works on a plain nested dict (a resolved hydra
config)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from vqbet.data import EpisodeData, TrajectoryWindows, check_outliers, split_episodes
from vqbet.data.formats import detect_format
from vqbet.evaluation.offline import evaluate_offline
from vqbet.evaluation.report import plot_curves
from vqbet.evaluation.rollouts import evaluate
from vqbet.io.atomic import write_text
from vqbet.io.checkpoint import read_json
from vqbet.io.run_dir import RunDir, undone_if_disk_full, writer_lock
from vqbet.pipeline.collect import collect
from vqbet.pipeline.config import RunConfig, check_run_config, config_differences
from vqbet.pipeline.eval import DEMONSTRATION_KEYS, evaluate_and_report, offline_and_report
from vqbet.pipeline.task import POLICY_DIMENSIONS, TaskConfig, env_factory, read_task_data, with_data_dims
from vqbet.policies import Policy, load_policy, policy_class
from vqbet.training import compile_network, resolve_device, setup_distributed, train_policy


def build_policy(cfg: dict[str, Any]) -> Policy:
    """The policy family cfg["policy"]["family"] names (or, without that key, its "name": a named
    configuration such as BeT builds another family), with every dimension from cfg["task"] and,
    for families over a tokenizer, the tokenizer cfg["tokenizer"]["name"] names, configured by
    cfg["tokenizer"]["model"]."""
    fields = dict(cfg["policy"])
    name = fields.pop("name")
    family = policy_class(fields.pop("family", None) or name)
    task = TaskConfig.from_dict(cfg["task"], "task")
    fields.update({k: getattr(task, k) for k in POLICY_DIMENSIONS})
    if task.cameras:  # a pixel task: its cameras (and their encoder settings)
        fields["vision"] = {**fields.get("vision", {}), **task.vision, "cameras": task.cameras}
    tokenizer = cfg.get("tokenizer", {})
    policy = family.build(fields, {"name": tokenizer.get("name", "rvq"), **(tokenizer.get("model") or {})})
    if name != policy.name:  # a named configuration of a family (BeT): reports say its name
        policy.metadata["configuration"] = name
    return policy


def fit_phase_one(policy: Policy, run: RunConfig, windows: TrajectoryWindows) -> None:
    """Phase 1 (`policy.fit_statistics`), with the tokenizer's curves and a summary line."""
    print(f"phase 1: {policy.name} statistics on {len(windows)} windows")
    summary = policy.fit_statistics(
        windows, seed=run.train.seed, tokenizer_fit=run.tokenizer_fit, log_dir=run.run_dir.tensorboard
    )
    if "history" in summary:
        usage = sorted(k for k in summary if k.startswith("used_fraction/"))
        title = "tokenizer: fraction of codes used, per layer"
        plot_curves(summary["history"], usage, run.run_dir.root / "codebook_usage.png", title)
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


def _with_data_dims(cfg: dict[str, Any]) -> tuple[dict[str, Any], EpisodeData | None]:
    """`with_data_dims` on the config's task, written back into the config (whose config.yaml the
    run folder keeps), and the data read for it; a task that does not parse is left to
    `check_run_config`, which names it with every other problem."""
    try:
        task = TaskConfig.from_dict(cfg.get("task"), "task")
    except ValueError:
        return cfg, None
    filled, data = with_data_dims(task)
    changed = {
        k: getattr(filled, k)
        for k in ("obs_dim", "action_dim", "vision")
        if getattr(filled, k) != getattr(task, k)
    }
    return {**cfg, "task": {**cfg["task"], **changed}}, data


def load_demonstrations(
    run: RunConfig, rank: int, world: int, preloaded: EpisodeData | None = None
) -> EpisodeData:
    """The task's dataset (any format `load_dataset` reads, with the task's `obs_keys` and
    `action_key` if it sets them), checked against the task (dims, recorded task id, outliers). A missing
    dataset is collected by the task's expert (rank 0) when it is the task's default path or
    `collect.new_path` is set; a mistyped path is an error, not a new dataset."""
    task, c = run.task, run.collect
    dataset = Path(task.dataset)
    if preloaded is None and not _present(dataset):
        if task.env_id is None:
            raise FileNotFoundError(
                f"dataset {dataset} does not exist (and without an env there is no expert)"
            )
        default = task.default_dataset
        if dataset != Path(default or "") and not c.new_path:
            raise FileNotFoundError(
                f"dataset {dataset} does not exist, and it is not the task's default ({default}): "
                f"nothing was collected. Check the path, or pass collect.new_path=true to collect "
                f"{c.episodes} expert episodes there."
            )
        if rank == 0:
            print(f"{dataset} is missing: collecting {c.episodes} expert episodes of {task.env_id} first")
            collect(
                task.env_id,
                c.episodes,
                dataset,
                workers=c.workers,
                perturb=c.perturb,
                perturb_hold=c.perturb_hold,
                env_kwargs=task.env_kwargs,
            )
    if world > 1:
        torch.distributed.barrier()
    data = preloaded if preloaded is not None else read_task_data(task)
    if data.obs.shape[1] != task.obs_dim or data.action.shape[1] != task.action_dim:
        raise ValueError(
            f"{dataset}: obs/action dims {data.obs.shape[1]}/{data.action.shape[1]} do not match task "
            f"{task.name} ({task.obs_dim}/{task.action_dim})"
        )
    recorded = data.attrs.get("task_id")
    mismatch = task.env_id is not None and recorded not in (None, task.env_id)
    if mismatch and not run.data.allow_task_mismatch:
        raise ValueError(
            f"{dataset} holds demonstrations of {recorded}, but the task is {task.env_id}; pass "
            "data.allow_task_mismatch=true to train on them anyway"
        )
    check_outliers(data, run.data.outlier_std)
    return data


def prepare_run_dir(run: RunConfig, content_hash: str) -> None:
    """Refuse to start where a run would be lost or mixed up: a fresh start over an existing run
    (unless `overwrite`), a resume whose config or dataset differs from the stored run's."""
    cfg, last = run.raw, run.run_dir.last
    if not cfg["resume"]:
        if last.is_dir() and not cfg.get("overwrite", False):
            raise FileExistsError(
                f"{run.run_dir.root} already holds a run ({last}): pass resume=true to continue it, "
                "overwrite=true to start it over (its checkpoints are replaced), or another run_dir"
            )
        return
    stored = run.run_dir.config
    if stored.is_file():
        differences = config_differences(yaml.safe_load(stored.read_text()), cfg)
        if differences:
            listed = "\n".join(f"  - {d}" for d in differences)
            raise ValueError(f"resume=true, but the config differs from the run's own ({stored}):\n{listed}")
    if (last / "config.json").is_file():
        recorded = read_json(last).get("metadata", {}).get("demonstrations", {}).get("content_sha256")
        if recorded is not None and recorded != content_hash:
            raise ValueError(
                f"resume=true, but {run.task.dataset} is not the dataset {last} was trained on "
                "(its content hash differs)"
            )


def _has_checkpoint(root: Path) -> bool:
    return RunDir.of(root).last.is_dir()


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """The main job on a resolved config (configs/train.yaml); returns the evaluation results (an
    empty dict on ranks other than 0 under torchrun). Everything is checked (config, dataset, run
    folder) before the run folder is written."""
    started = time.perf_counter()
    cfg, preloaded = _with_data_dims(cfg)
    run = check_run_config(cfg, build_policy)
    task, folder, seed = run.task, run.run_dir, run.seed
    # Under torchrun: join the process group first (gloo on CPU, NCCL on CUDA); rank 0 collects,
    # logs, evaluates and writes; every rank fits the same phase 1 from the same seed.
    device = resolve_device(run.train.device)
    rank, world, _ = setup_distributed(device)
    data = load_demonstrations(run, rank, world, preloaded)
    run.policy.check_env_state(data)  # before the run folder: a missing training target
    content_hash = data.content_hash()
    # One writer per run folder (rank 0 writes for all): the checks of the folder run under the
    # lock, so two jobs started together cannot both find it free and mix their files.
    fresh = not folder.root.exists()
    with contextlib.ExitStack() as held:
        if rank == 0:
            held.enter_context(writer_lock(folder.root, "training"))
            # A full disk: the folder this run made goes again unless it holds a checkpoint.
            held.enter_context(undone_if_disk_full(folder.root, created=fresh, keep=_has_checkpoint))
        prepare_run_dir(run, content_hash)
        train_eps, val_eps = split_episodes(data.num_episodes, run.data.val_fraction, seed=seed)
        shape = dict(obs_window=task.obs_window, action_chunk=task.action_chunk, cameras=task.cameras)
        train_set = TrajectoryWindows(data, episodes=train_eps, **shape)
        val_set = TrajectoryWindows(data, episodes=val_eps, **shape) if len(val_eps) else None
        if rank == 0:
            print(f"run folder: {folder.root} ({world} process{'es' if world > 1 else ''})")
            write_text(folder.config, yaml.safe_dump(cfg, sort_keys=False))

        torch.manual_seed(seed)
        policy = build_policy(cfg)  # afresh after the seed: the weights do not depend on the checks
        demonstrations = {k: data.attrs[k] for k in DEMONSTRATION_KEYS if k in data.attrs}
        demonstrations.update(path=str(task.dataset), content_sha256=content_hash)
        policy.metadata.update(task=cfg["task"], demonstrations=demonstrations)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(folder.tensorboard)) if rank == 0 else None
        if not (bool(cfg["resume"]) and folder.last.is_dir()):
            fit_phase_one(policy, run, train_set)
        params = sum(p.numel() for p in policy.parameters())
        print(f"phase 2: {policy.name} on {len(train_set)} windows ({params:,} params)")
        offline, eval_cfg = task.env_id is None, run.eval
        make_env = None if offline else env_factory(task.env_id, **eval_cfg.env_kwargs(task.env_kwargs))
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
            folder.root,
            resume=bool(cfg["resume"]),
            log=(lambda k, v, s: writer.add_scalar(k, v, s)) if writer is not None else None,
            on_eval=on_eval,
            started=started,
        )
        if writer is None:  # ranks other than 0 are done: rank 0 evaluates and reports
            return {}
        writer.close()
        train_seconds = state["seconds"]  # this job's, plus the stopped jobs' it resumed

        best = load_policy(folder.best, obs_dim=task.obs_dim, action_dim=task.action_dim)
        best.to(device)  # the simulator stays on the CPU
        if run.train.compile:
            compile_network(best)
        torch.manual_seed(seed)
        curves = ["greedy_nmse", "best_of_5_nmse"] if offline else ["success_rate"]
        plot_curves(state["history"], ["loss", "val_loss", *curves], folder.root / "curves.png", "training")
        extra = {
            "seed": seed,
            "train_seconds": train_seconds,
            "device": str(device),
            "parameters": params,
            "best_step": state.get("best_step"),
        }
        if offline:
            where = (
                f"{len(val_eps)} held-out episodes" if val_set else "the training episodes (none held out)"
            )
            print(f"evaluating {folder.best} offline on {where}")
            results = offline_and_report(
                best, held_out, folder.root, {**extra, "evaluated_on": where}, started
            )
        else:
            print(f"evaluating {folder.best} on {eval_cfg.episodes} episodes")
            results = evaluate_and_report(
                best, task.env_id, eval_cfg, folder.root, extra, started, task.env_kwargs
            )
        print(f"{time.perf_counter() - started:.0f} s in all")
        return results
