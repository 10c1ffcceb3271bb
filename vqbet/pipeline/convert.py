"""`scripts/convert.py`: demonstrations from any format `load_dataset` reads, written as vqbet's
own HDF5 (the source, its format and the key mapping in the metadata) or as a LeRobotDataset v3.0."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vqbet.data import export_lerobot, load_dataset, write_hdf5
from vqbet.data.formats.common import ImageKeys


def convert(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    to: Literal["hdf5", "lerobot"] = "hdf5",
    format: str | None = None,
    obs_keys: Sequence[str] | str | None = None,
    action_key: str | None = None,
    image_keys: ImageKeys = None,
    filter_key: str | None = None,
    fps: int | None = None,
    task_description: str = "",
    overwrite: bool = False,
) -> Path:
    """Read `source` and write it to `out` (atomically) as `to`. A LeRobot export needs the
    frame rate: `fps`, or the one the source records. An existing `out` is replaced (atomically)
    only with `overwrite`."""
    if to not in ("hdf5", "lerobot"):
        raise ValueError(f"to must be hdf5 or lerobot, got {to!r}")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass overwrite=true to replace it")
    data = load_dataset(
        source,
        format=format,
        obs_keys=obs_keys,
        action_key=action_key,
        image_keys=image_keys,
        filter_key=filter_key,
    )
    data.attrs.update(converted_from=str(source), converted_from_format=data.attrs["source_format"])
    if to == "hdf5":
        path = write_hdf5(out, data)
    else:
        rate = fps or data.attrs.get("fps")
        if not rate:
            raise ValueError(
                f"{source} records no frame rate: pass fps=<steps per second> for the LeRobot export"
            )
        path = export_lerobot(
            data, out, fps=int(rate), task=task_description or str(data.attrs.get("task_id", ""))
        )
    print(
        f"{source} ({data.attrs['source_format']}): {data.num_episodes} episodes, {data.num_steps} steps, "
        f"obs {data.obs.shape[1]}-D, action {data.action.shape[1]}-D"
        f"{', cameras ' + str(sorted(data.images)) if data.images else ''} -> {path} ({to})"
    )
    return path
