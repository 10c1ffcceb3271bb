"""The package's top layer: what the scripts run, as functions on plain (resolved) config dicts.
The only part of vqbet that imports `envs`, and only inside functions, so `import vqbet` works
without MuJoCo.

    collect(env_id, episodes, out, ...)       demonstrations from a task's scripted expert
    convert(source, out, to="hdf5"|"lerobot") demonstrations from any format load_dataset reads
    build_policy(cfg) / fit_phase_one(...)    the policy a config names, and its phase 1
    train(cfg)                                the main job: data, both phases, evaluation, report
    evaluate_checkpoint(cfg)                  scripts/eval.py
    evaluate_and_report(policy, env_id, ...)  rollouts + results.json, report.md, plots, video
"""

import sys
from collections.abc import Callable
from typing import Any

from vqbet.io.full_disk import DiskFull
from vqbet.io.run_dir import RunFolderBusy
from vqbet.pipeline.collect import collect
from vqbet.pipeline.config import EVAL_SEED, RunConfig, check_run_config
from vqbet.pipeline.convert import convert
from vqbet.pipeline.eval import evaluate_and_report, evaluate_checkpoint
from vqbet.pipeline.task import TaskConfig, env_factory
from vqbet.pipeline.train import build_policy, fit_phase_one, train
from vqbet.training.loop import TrainingDiverged

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, TrainingDiverged, RunFolderBusy, DiskFull)
"""What bad input, a missing file, a diverged run or a full disk raise: the scripts print the
message alone."""


def run_cli(job: Callable[[], Any]) -> Any:
    """Run a script's job; a user error (bad config, data or file) exits with status 1 and its
    message, without a traceback (anything else, a bug, keeps its traceback)."""
    try:
        return job()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


__all__ = [
    "EVAL_SEED",
    "RunConfig",
    "TaskConfig",
    "build_policy",
    "check_run_config",
    "collect",
    "convert",
    "env_factory",
    "evaluate_and_report",
    "evaluate_checkpoint",
    "fit_phase_one",
    "run_cli",
    "train",
]
