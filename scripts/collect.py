"""Collect expert demonstrations into a vqbet HDF5 dataset (vqbet.pipeline.collect).

    python scripts/collect.py task=blockpush episodes=1000 [workers=2 images=true keep_failures=true
        perturb=0.03 perturb_hold=5 out=...]

`perturb`/`perturb_hold` default to the task config's (BlockPush: DART demonstrations, 0.03 / 5;
the other tasks: none).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vqbet.pipeline import collect, run_cli


@hydra.main(version_base="1.3", config_path="../configs", config_name="collect")
def main(cfg: DictConfig) -> None:
    run_cli(
        lambda: collect(
            cfg.task.env_id,
            int(cfg.episodes),
            cfg.out,
            seed=int(cfg.seed),
            workers=int(cfg.workers),
            keep_failures=bool(cfg.keep_failures),
            images=bool(cfg.images),
            perturb=float(cfg.perturb),
            perturb_hold=int(cfg.perturb_hold),
            env_kwargs=OmegaConf.to_container(cfg, resolve=True)["env_kwargs"],
        )
    )


if __name__ == "__main__":
    main()
