"""read_lerobot checks a LeRobotDataset's metadata against its data: each test exports a small
dataset, damages one thing (info.json, meta/episodes, the data parquet) and expects the error that
names the file, the episode, the field, the metadata's value and the data's."""

import json
import math
import shutil

import numpy as np
import pytest
from test_formats import LENGTHS, assert_same, reference

from vqbet.data.formats import export_lerobot, load_dataset

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture
def root(tmp_path):
    """A valid v3.0 export of three episodes (5, 7 and 4 frames) at 10 fps, without cameras."""
    return export_lerobot(reference(with_images=False), tmp_path / "lerobot", fps=10)


def edit_info(root, **changes) -> None:
    file = root / "meta" / "info.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def edit_column(file, name: str, edit) -> None:
    """Rewrite column `name` of a parquet file with edit(values copy) (same type)."""
    table = pq.read_table(file)
    values = table.column(name).to_numpy().copy()
    edit(values)
    field = table.schema.get_field_index(name)
    pq.write_table(table.set_column(field, name, pa.array(values, table.schema.field(name).type)), file)


def drop_rows(file, keep) -> None:
    table = pq.read_table(file)
    pq.write_table(table.filter(pa.array(keep(table))), file)


def test_a_valid_export_loads_unchanged(root):
    ref = reference(with_images=False)
    data = load_dataset(root)
    assert_same(data, ref, image_tolerance=None)
    assert data.attrs["lerobot_episode_index"] == [0, 1, 2]


@pytest.mark.parametrize("fps", [0, -10, "10", math.nan, None])
def test_fps_that_is_not_a_positive_finite_number(root, fps):
    edit_info(root, fps=fps)
    with pytest.raises(
        ValueError, match=rf"meta/info\.json: fps must be a positive finite number, got {fps!r}"
    ):
        load_dataset(root)


def test_total_episodes_that_disagrees_with_the_data(root):
    edit_info(root, total_episodes=4)
    with pytest.raises(ValueError, match=r"info\.json: total_episodes is 4, the data files hold 3 episodes$"):
        load_dataset(root)


def test_total_frames_that_disagrees_with_the_data(root):
    edit_info(root, total_frames=17)
    with pytest.raises(ValueError, match=r"info\.json: total_frames is 17, the data files hold 16 frames"):
        load_dataset(root)


def test_an_episode_in_meta_episodes_missing_from_the_data(root):
    drop_rows(root / DATA, lambda table: table.column("episode_index").to_numpy() != 2)
    with pytest.raises(
        ValueError,
        match=rf"lerobot: episode\(s\) \[2\] listed in {EPISODES} have no rows in the data "
        rf"\(episode 2 belongs in {DATA}\)",
    ):
        load_dataset(root)


def test_an_episode_in_the_data_missing_from_meta_episodes(root):
    drop_rows(root / EPISODES, lambda table: table.column("episode_index").to_numpy() != 1)
    with pytest.raises(
        ValueError, match=rf"episode\(s\) \[1\] have rows in the data but no entry in {EPISODES}"
    ):
        load_dataset(root)


def test_meta_episodes_missing(root):
    shutil.rmtree(root / "meta" / "episodes")
    with pytest.raises(FileNotFoundError, match=r"lerobot: no meta/episodes/chunk-\*/file-\*\.parquet"):
        load_dataset(root)


def test_an_episode_length_that_disagrees_with_its_rows(root):
    edit_column(root / EPISODES, "length", lambda length: length.__setitem__(1, 8))
    with pytest.raises(
        ValueError,
        match=rf"{EPISODES}: episode 1: length is 8 in the metadata; the data has 7 rows of the episode",
    ):
        load_dataset(root)


@pytest.mark.parametrize(
    "field, metadata, data",
    [
        ("dataset_from_index", 6, "5 \\(the episode's rows have index 5\\.\\.11\\)"),
        ("dataset_to_index", 11, "12 \\(the episode's rows have index 5\\.\\.11\\)"),
    ],
)
def test_an_episode_index_range_that_disagrees_with_its_rows(root, field, metadata, data):
    edit_column(root / EPISODES, field, lambda values: values.__setitem__(1, metadata))
    with pytest.raises(
        ValueError,
        match=rf"{EPISODES}: episode 1: {field} is {metadata} in the metadata; the data has {data}",
    ):
        load_dataset(root)


def test_timestamps_that_do_not_increase(root):
    edit_column(root / DATA, "timestamp", lambda t: t.__setitem__([7, 8], t[[8, 7]]))  # ep 1, frames 2, 3
    with pytest.raises(
        ValueError,
        match=r"lerobot: episode 1, frame 3: timestamp 0\.200000 s does not increase "
        r"\(frame 2 is at 0\.300000 s\)",
    ):
        load_dataset(root)


def test_timestamps_out_of_sync_with_fps(root):
    edit_column(root / DATA, "timestamp", lambda t: t.__setitem__(9, t[9] + 2e-4))  # ep 1, frame 4
    with pytest.raises(
        ValueError,
        match=r"lerobot: episode 1, frame 4: timestamp 0\.400200 s, expected 0\.400000 s "
        r"\(first timestamp \+ frame_index / fps, fps 10\) within 0\.0001 s",
    ):
        load_dataset(root)
    edit_column(root / DATA, "timestamp", lambda t: t.__setitem__(9, 0.4 + 5e-5))  # within tolerance
    assert load_dataset(root).num_steps == sum(LENGTHS)
    edit_info(root, fps=20)  # the timestamps are 0.1 s apart
    with pytest.raises(ValueError, match=r"episode 0, frame 1: timestamp 0\.100000 s, expected 0\.050000 s"):
        load_dataset(root)


def test_the_metadata_is_checked_before_any_video_is_opened(tmp_path):
    pytest.importorskip("av")
    root = export_lerobot(reference(), tmp_path / "lerobot", fps=10)
    edit_column(root / EPISODES, "length", lambda length: length.__setitem__(0, 6))
    for video in root.glob("videos/**/*.mp4"):
        video.unlink()
    with pytest.raises(ValueError, match=r"episode 0: length is 6 in the metadata; the data has 5"):
        load_dataset(root, image_keys="observation.image")


def test_cameras_are_decoded_at_from_timestamp_plus_the_row_timestamp(tmp_path):
    pytest.importorskip("av")
    ref = reference()
    root = export_lerobot(ref, tmp_path / "lerobot", fps=10)
    edit_column(root / DATA, "timestamp", lambda t: t.__setitem__(slice(0, 5), t[:5] + 0.1))  # episode 0
    frames = load_dataset(root, image_keys="observation.image").images["image"]
    error = np.abs(frames[np.arange(5)].astype(float) - ref.images["image"][1:6]).mean()
    assert error <= 2.0  # episode 0's frame k is the video's frame at 0.1 s + k / fps


def as_v21(root, jsonl: bool = True):
    """The v3.0 export rewritten as a LeRobotDataset v2.1: one data file per episode,
    meta/episodes.jsonl (when `jsonl`), no meta/episodes/."""
    table = pq.read_table(root / DATA)
    episode = table.column("episode_index").to_numpy()
    for e in range(len(LENGTHS)):
        file = root / f"data/chunk-000/episode_{e:06d}.parquet"
        pq.write_table(table.filter(pa.array(episode == e)), file)
    (root / DATA).unlink()
    shutil.rmtree(root / "meta" / "episodes")
    data_path = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    edit_info(root, codebase_version="v2.1", data_path=data_path)
    if jsonl:
        rows = [{"episode_index": e, "tasks": [""], "length": n} for e, n in enumerate(LENGTHS)]
        (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_v21_loads_and_its_episodes_jsonl_is_checked(root):
    as_v21(root)
    assert_same(load_dataset(root), reference(with_images=False), image_tolerance=None)
    jsonl = root / "meta" / "episodes.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows[2]["length"] = 5
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        ValueError, match=r"meta/episodes\.jsonl: episode 2: length is 5 in the metadata; the data has 4"
    ):
        load_dataset(root)
    rows[2]["length"] = 4
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"episode_index": 3, "length": 2}]))
    with pytest.raises(
        ValueError,
        match=r"episode\(s\) \[3\] listed in meta/episodes\.jsonl have no rows in the data "
        r"\(episode 3 belongs in data/chunk-000/episode_000003\.parquet\)",
    ):
        load_dataset(root)


def test_v21_without_episodes_jsonl_a_missing_episode_file(root):
    as_v21(root, jsonl=False)
    (root / "data/chunk-000/episode_000001.parquet").unlink()
    with pytest.raises(
        ValueError,
        match=r"info\.json: total_episodes is 3, the data files hold 2 episodes; episode\(s\) \[1\] have no "
        r"rows \(episode 1 belongs in data/chunk-000/episode_000001\.parquet\)",
    ):
        load_dataset(root)
