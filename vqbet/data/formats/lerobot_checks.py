"""A LeRobotDataset's metadata checked against its data, before anything is decoded: `fps` in
meta/info.json, `total_episodes` / `total_frames`, the episodes the metadata lists (v3.0
meta/episodes/*/*.parquet, v2.x meta/episodes.jsonl) with their `length` and, in v3.0, their
`dataset_from_index` / `dataset_to_index` (LeRobot indexes an episode's rows by these), and the
`timestamp` column against `frame_index / fps`. Every error starts with the dataset folder or the
file and names the episode, the field, what the metadata says and what the data holds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vqbet.data.formats.common import optional

TOLERANCE_S = 1e-4
"""LeRobotDataset's default `tolerance_s`: how far a frame's timestamp may be from
first timestamp + frame_index / fps (LeRobot refuses a dataset whose timestamps are further)."""

META_COLUMNS = ("episode_index", "length", "dataset_from_index", "dataset_to_index")
DATA_FILE_COLUMNS = ("data/chunk_index", "data/file_index")


def few(values: Any, n: int = 5) -> str:
    """The first `n` of `values` as a list, with "..." when there are more."""
    values = list(values)
    return f"{values[:n]}{'...' if len(values) > n else ''}"


def check_fps(info: dict[str, Any], file: Path) -> float:
    """meta/info.json's fps, which must be a positive finite number."""
    fps = info["fps"]
    number = isinstance(fps, int | float) and not isinstance(fps, bool)
    if not number or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{file}: fps must be a positive finite number, got {fps!r}")
    return float(fps)


def read_episode_meta(root: Path, info: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The episodes the metadata lists: {"file": the metadata file of each row, "row": {episode:
    row}, column: list per row} with the columns of META_COLUMNS (and `extra`) that the metadata
    has; only those columns are read. v3.0 needs meta/episodes/chunk-*/file-*.parquet; v2.x reads
    meta/episodes.jsonl when it exists (None when it does not)."""
    if info["codebase_version"] == "v3.0":
        pq = optional("pyarrow.parquet", "lerobot")
        files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"{root}: no meta/episodes/chunk-*/file-*.parquet (a v3.0 dataset lists its episodes there)"
            )
        schemas = [pq.read_schema(file).names for file in files]
        for file, schema in zip(files, schemas, strict=True):
            missing = [k for k in ("episode_index", *extra) if k not in schema]
            if missing:
                raise ValueError(f"{file}: column(s) {missing} missing; it has {schema}")
        optional_names = (*META_COLUMNS[1:], *DATA_FILE_COLUMNS)
        names = ["episode_index", *(k for k in optional_names if all(k in s for s in schemas)), *extra]
        meta: dict[str, Any] = {"file": [], **{name: [] for name in names}}
        for file in files:
            table = pq.read_table(file, columns=names)
            for name in names:
                meta[name] += table.column(name).to_pylist()
            meta["file"] += [str(file.relative_to(root))] * table.num_rows
    else:
        file = root / "meta" / "episodes.jsonl"
        if not file.is_file():
            return None
        meta = {"file": [], "episode_index": [], "length": []}
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}: line {number} is not valid JSON: {err}") from None
            if not isinstance(row, dict) or "episode_index" not in row:
                raise ValueError(f"{file}: line {number} has no 'episode_index'")
            meta["file"].append("meta/episodes.jsonl")
            meta["episode_index"].append(row["episode_index"])
            meta["length"].append(row.get("length"))
        if all(length is None for length in meta["length"]):
            del meta["length"]
    meta["row"] = {}
    for i, episode in enumerate(meta["episode_index"]):
        if episode in meta["row"]:
            raise ValueError(f"{root / meta['file'][i]}: episode {episode} is listed twice")
        meta["row"][episode] = i
    return meta


def _data_file(info: dict[str, Any], meta: dict[str, Any] | None, episode: int) -> str:
    """Where `episode`'s rows belong, from data_path (and, in v3.0, the episode's metadata row)."""
    try:
        if info["codebase_version"] != "v3.0":
            chunk = episode // int(info.get("chunks_size", 1000))
            return str(info["data_path"].format(episode_chunk=chunk, episode_index=episode))
        row = meta["row"].get(episode) if meta else None
        if row is None or not all(k in meta for k in DATA_FILE_COLUMNS):
            return "data/"
        return str(
            info["data_path"].format(
                chunk_index=meta[DATA_FILE_COLUMNS[0]][row], file_index=meta[DATA_FILE_COLUMNS[1]][row]
            )
        )
    except (KeyError, ValueError, IndexError):
        return "data/"


def check_episodes(
    root: Path,
    info: dict[str, Any],
    meta: dict[str, Any] | None,
    order: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    index: np.ndarray | None,
) -> None:
    """The episodes the metadata lists and their lengths and index ranges against the data, whose
    episodes `order` occupy rows [starts, ends) with global `index` (None: the row positions)."""
    data = {int(e): i for i, e in enumerate(order)}
    if meta is not None:
        missing = [e for e in meta["episode_index"] if e not in data]
        if missing:
            file = meta["file"][meta["row"][missing[0]]]
            raise ValueError(
                f"{root}: episode(s) {few(missing)} listed in {file} have no rows in the data "
                f"(episode {missing[0]} belongs in {_data_file(info, meta, missing[0])})"
            )
        unlisted = [e for e in data if e not in meta["row"]]
        if unlisted:
            raise ValueError(
                f"{root}: episode(s) {few(unlisted)} have rows in the data but no entry in "
                f"{meta['file'][0] if meta['file'] else 'the metadata'}"
            )
        first = index[starts] if index is not None else starts
        last = index[ends - 1] + 1 if index is not None else ends
        found = {"length": ends - starts, "dataset_from_index": first, "dataset_to_index": last}
        for field, values in found.items():
            if field not in meta:
                continue
            for e, i in data.items():
                row = meta["row"][e]
                if meta[field][row] != int(values[i]):
                    detail = (
                        " rows of the episode"
                        if field == "length"
                        else f" (the episode's rows have index {int(first[i])}..{int(last[i]) - 1})"
                    )
                    raise ValueError(
                        f"{root / meta['file'][row]}: episode {e}: {field} is {meta[field][row]!r} in "
                        f"the metadata; the data has {int(values[i])}{detail}"
                    )
    file = root / "meta" / "info.json"
    total = info.get("total_episodes")
    if total is not None and total != len(order):
        absent = []
        if isinstance(total, int) and info["codebase_version"] != "v3.0":
            absent = [e for e in range(total) if e not in data]
        where = ""
        if absent:
            belongs = _data_file(info, meta, absent[0])
            where = f"; episode(s) {few(absent)} have no rows (episode {absent[0]} belongs in {belongs})"
        raise ValueError(
            f"{file}: total_episodes is {total!r}, the data files hold {len(order)} episodes{where}"
        )
    frames = info.get("total_frames")
    rows = int(ends[-1]) if len(ends) else 0
    if frames is not None and frames != rows:
        raise ValueError(f"{file}: total_frames is {frames!r}, the data files hold {rows} frames")


def check_timestamps(
    where: str, order: np.ndarray, starts: np.ndarray, ends: np.ndarray, timestamp: np.ndarray, fps: float
) -> None:
    """Each episode's `timestamp` finite, strictly increasing and within TOLERANCE_S of its first
    timestamp + frame_index / fps (the rows of an episode are frames 0, 1, ...; the expected value
    is rounded to the column's precision, as a writer storing frame_index / fps rounds it)."""
    stored = timestamp.dtype if np.issubdtype(timestamp.dtype, np.floating) else np.dtype(np.float64)
    values = timestamp.astype(np.float64)
    lengths = ends - starts
    frame = np.arange(len(values)) - np.repeat(starts, lengths)
    episode_of = np.repeat(np.arange(len(order)), lengths)

    def refuse(row: int, what: str) -> None:
        e, f = int(order[episode_of[row]]), int(frame[row])
        raise ValueError(f"{where}: episode {e}, frame {f}: timestamp {what}")

    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        refuse(int(bad[0]), f"is {values[bad[0]]}")
    step = np.diff(values, prepend=np.nan)
    bad = np.flatnonzero((frame > 0) & ~(step > 0))
    if len(bad):
        row = int(bad[0])
        refuse(
            row,
            f"{values[row]:.6f} s does not increase (frame {frame[row] - 1} is at {values[row - 1]:.6f} s)",
        )
    first = np.repeat(values[starts], lengths)
    expected = (first + frame / fps).astype(stored).astype(np.float64)
    bad = np.flatnonzero(~(np.abs(values - expected) <= TOLERANCE_S))
    if len(bad):
        row = int(bad[0])
        refuse(
            row,
            f"{values[row]:.6f} s, expected {expected[row]:.6f} s (first timestamp + frame_index / fps, "
            f"fps {fps:g}) within {TOLERANCE_S:g} s",
        )
