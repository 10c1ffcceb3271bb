"""Train a policy end to end: collect demonstrations if missing, phase 1 (tokenizer / bins /
normaliser), phase 2 (policy), then evaluate the best checkpoint and write a report
(vqbet.pipeline.train).

    python scripts/train.py                          # the default: VQ-BeT on the default task
    python scripts/train.py task=blockpush policy=mlp seed=1
    python scripts/train.py experiment=smoke         # seconds, for CI
    python scripts/train.py ... resume=true          # continue exactly from run_dir/checkpoints/last
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vqbet.pipeline import run_cli, train
from vqbet.runtime import retain_freed_memory


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    if cfg.retain_freed_memory:
        retain_freed_memory()
    run_cli(lambda: train(OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    main()
