"""The main job's config, checked whole before any work or any write: every section becomes a
typed dataclass (unknown keys, types and ranges named), the policy is built (its config checked),
and all problems are reported in one message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from vqbet.checks import check_ranges, config_from_dict
from vqbet.io.run_dir import RunDir
from vqbet.pipeline.task import TaskConfig
from vqbet.policies import Policy
from vqbet.tokenizers.fit import TokenizerFitConfig
from vqbet.training.loop import PolicyTrainConfig

EVAL_SEED = 1_000_000
"""First evaluation seed: disjoint from the demonstration seeds 0..episodes-1."""
TOP_LEVEL = ("task", "tokenizer", "policy", "seed", "run_dir", "resume", "overwrite", "collect", "data")
TOP_LEVEL += ("eval", "train", "retain_freed_memory")
RESUMABLE = ("resume", "overwrite", "retain_freed_memory", "eval.", "collect.", "task.dataset")
RESUMABLE += ("train.steps", "train.eval_every", "train.checkpoint_every", "train.log_every")
RESUMABLE += ("train.num_workers", "train.device")
"""Config keys a resumed run may change (everything else must equal the stored run's). The dataset
may move: its content is checked against the checkpoint's hash instead."""


@dataclass
class CollectConfig:
    """How the task's expert collects a missing dataset."""

    episodes: int = 1000
    """Expert episodes (seeds 0..episodes-1)."""
    workers: int = 2
    """Parallel processes."""
    perturb: float = 0.0
    """DART noise std on the executed actions."""
    perturb_hold: int = 1
    """Steps each noise draw is held."""
    new_path: bool = False
    """Collect also when the missing dataset is not the task's default path (else a mistyped path
    is an error instead of a new dataset)."""

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("episodes", "workers", "perturb_hold"),
            non_negative=("perturb",),
            flags=("new_path",),
        )


@dataclass
class DataConfig:
    """How the demonstrations are checked and split."""

    val_fraction: float = 0.05
    """Share of episodes held out for the validation loss."""
    outlier_std: float = 1000.0
    """Refuse a dataset with an entry this many (robust) standard deviations from its column's
    mean; 0 turns the check off."""
    allow_task_mismatch: bool = False
    """Train although the dataset records another task (deliberate transfer)."""

    def __post_init__(self) -> None:
        check_ranges(self, non_negative=("val_fraction", "outlier_std"), flags=("allow_task_mismatch",))
        if not self.val_fraction < 1:
            raise ValueError(f"DataConfig: val_fraction must be < 1, got {self.val_fraction}")


BACKENDS = ("cpu", "warp")
"""Simulators an evaluation runs on (EvalConfig.backend)."""


@dataclass
class EvalConfig:
    """Rollouts during training and of the best checkpoint."""

    episodes: int = 100
    """Final evaluation episodes (seeds first_seed..)."""
    num_envs: int = 50
    """Parallel envs in the vector env (one batched policy call for all)."""
    during_training: int = 20
    """Episodes at every validation point (0 = off)."""
    video_episodes: int = 4
    """Episodes in the tiled video (0 = off)."""
    first_seed: int = EVAL_SEED
    """Episode i runs on seed first_seed + i."""
    max_episode_steps: int | None = None
    """Episodes end after this many steps (None: the task's own limit). A longer limit tells a
    slow policy from a lost one: results.json keeps every episode's length."""
    backend: str = "cpu"
    """Simulator of the final evaluation (scripts/eval.py, the end of training): "cpu" (CPU MuJoCo in
    a gymnasium vector env) or "warp" (num_envs MuJoCo Warp worlds in one batch on the GPU:
    envs.warp, Kitchen only, docs/evaluation.md). Validation during training runs on "cpu"."""

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("episodes", "num_envs"),
            counts=("during_training", "video_episodes", "first_seed"),
        )
        steps = self.max_episode_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"EvalConfig: max_episode_steps must be an integer >= 1 or null, got {steps!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"EvalConfig: backend must be one of {list(BACKENDS)}, got {self.backend!r}")

    def env_kwargs(self, task_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """The task's env keyword arguments with this evaluation's episode limit, if it sets one."""
        kwargs = dict(task_kwargs or {})
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs


@dataclass
class RunConfig:
    """A checked main-job config."""

    raw: dict[str, Any]
    """The resolved config as given (what the run folder's config.yaml holds)."""
    task: TaskConfig
    run_dir: RunDir
    seed: int
    policy: Policy
    """Built to check the policy config; training builds its own after seeding."""
    train: PolicyTrainConfig
    tokenizer_fit: TokenizerFitConfig | None
    collect: CollectConfig
    data: DataConfig
    eval: EvalConfig


T = TypeVar("T")


def check_run_config(cfg: dict[str, Any], build_policy: Callable[[dict[str, Any]], Policy]) -> RunConfig:
    """Check the whole resolved config (configs/train.yaml) and build the policy; raise one
    ValueError that lists every problem."""
    problems: list[str] = []

    def attempt(make: Callable[[], T]) -> T | None:
        try:
            return make()
        except (ValueError, TypeError, KeyError) as err:
            problems.append(str(err))
            return None

    unknown = sorted(set(cfg) - set(TOP_LEVEL))
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; known: {sorted(TOP_LEVEL)}")
    task = attempt(lambda: TaskConfig.from_dict(cfg.get("task"), "task"))
    for key in ("seed",):
        if isinstance(cfg.get(key), bool) or not isinstance(cfg.get(key), int):
            problems.append(f"{key} must be an integer, got {cfg.get(key)!r}")
    for key in ("resume", "overwrite", "retain_freed_memory"):
        if not isinstance(cfg.get(key, False), bool):
            problems.append(f"{key} must be true or false, got {cfg.get(key)!r}")
    seed = cfg.get("seed") if isinstance(cfg.get("seed"), int) else 0
    train = attempt(lambda: config_from_dict(PolicyTrainConfig, {**cfg["train"], "seed": seed}, "train"))
    fit = attempt(lambda: config_from_dict(TokenizerFitConfig, cfg["tokenizer"]["fit"], "tokenizer.fit"))
    collect = attempt(lambda: config_from_dict(CollectConfig, cfg["collect"], "collect"))
    data = attempt(lambda: config_from_dict(DataConfig, cfg["data"], "data"))
    evaluation = attempt(lambda: config_from_dict(EvalConfig, cfg["eval"], "eval"))
    if evaluation is not None and evaluation.backend == "warp" and task is not None and task.env_id:
        attempt(lambda: _check_warp_task(task.env_id))  # named now, not after training
    if not isinstance(cfg.get("run_dir"), str):
        problems.append(f"run_dir must be a path, got {cfg.get('run_dir')!r}")
    policy = attempt(lambda: build_policy(cfg)) if task is not None else None
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(f"the run's config has {len(problems)} problem(s); nothing was started:\n{listed}")
    return RunConfig(
        cfg, task, RunDir.of(cfg["run_dir"]), seed, policy, train, fit, collect, data, evaluation
    )


def _check_warp_task(env_id: str) -> None:
    """eval.backend=warp: ValueError naming `env_id` when MuJoCo Warp does not run it (loads nothing)."""
    from envs.warp import check_task

    check_task(env_id)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def config_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys (dotted) where a resumed run's config differs from the stored one, except those
    a resume may change (`RESUMABLE`)."""
    a, b = _flatten(stored), _flatten(new)
    return [
        f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) and not key.startswith(RESUMABLE) and key != "run_dir"
    ]
