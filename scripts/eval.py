"""Evaluate a trained policy checkpoint on the task it was trained on: seeded rollouts,
results.json, report.md, order histogram, tiled video (vqbet.pipeline.evaluate_checkpoint).

    python scripts/eval.py checkpoint=runs/multireach/vqbet-seed0/checkpoints/best
    python scripts/eval.py checkpoint=runs/blockpush/mlp-seed1/checkpoints/best eval.episodes=200
    python scripts/eval.py checkpoint=... act.execution=ensemble act.temperature=0.5 out=runs/x/eval/ens

Naming another task than the checkpoint's is an error (a MultiReach and a PushT policy have the
same input and output sizes).
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vqbet.pipeline import evaluate_checkpoint, run_cli
from vqbet.runtime import retain_freed_memory


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    overrides = HydraConfig.get().overrides.task
    task_given = any(o.split("=")[0].split(".")[0].lstrip("+~") == "task" for o in overrides)
    if cfg.retain_freed_memory:
        retain_freed_memory()
    run_cli(lambda: evaluate_checkpoint(OmegaConf.to_container(cfg, resolve=True), task_given=task_given))


if __name__ == "__main__":
    main()
