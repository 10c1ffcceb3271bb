"""Convert demonstrations (LeRobot v3.0/v2.1, robomimic, diffusion_policy zarr, Minari, vqbet HDF5)
to vqbet's HDF5 or to a LeRobotDataset v3.0 (vqbet.pipeline.convert).

    python scripts/convert.py source=lift/low_dim.hdf5 out=datasets/lift.hdf5 \
        obs_keys=[robot0_eef_pos,object] filter_key=train
    python scripts/convert.py source=datasets/pusht.hdf5 out=exports/pusht to=lerobot \
        task_description="push the T"
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vqbet.pipeline import convert, run_cli


@hydra.main(version_base="1.3", config_path="../configs", config_name="convert")
def main(cfg: DictConfig) -> None:
    run_cli(lambda: convert(**OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    main()
