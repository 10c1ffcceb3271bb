"""Demonstration datasets: in-memory episodes, the HDF5 file format, Minari interop, windows."""

from vqbet.data.episodes import EpisodeData, check_outliers, validate
from vqbet.data.hdf5 import read_hdf5, write_hdf5
from vqbet.data.windows import TrajectoryWindows, split_episodes

__all__ = [
    "EpisodeData",
    "TrajectoryWindows",
    "check_outliers",
    "read_hdf5",
    "split_episodes",
    "validate",
    "write_hdf5",
]
