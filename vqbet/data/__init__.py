"""Demonstration datasets: in-memory episodes, the HDF5 file format, readers of the formats users
bring (`load_dataset`: LeRobot, robomimic, zarr, Minari), windows."""

from vqbet.data.episodes import EpisodeData, check_outliers, validate
from vqbet.data.formats import FORMATS, export_lerobot, load_dataset
from vqbet.data.formats.hdf5 import read_hdf5, write_hdf5
from vqbet.data.windows import TrajectoryWindows, split_episodes

__all__ = [
    "FORMATS",
    "EpisodeData",
    "TrajectoryWindows",
    "check_outliers",
    "export_lerobot",
    "load_dataset",
    "read_hdf5",
    "split_episodes",
    "validate",
    "write_hdf5",
]
