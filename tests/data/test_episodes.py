"""Dataset layer: HDF5 and Minari round trips, windows against brute force, bad input."""

import h5py
import numpy as np
import pytest
import torch

from vqbet.data import EpisodeData, TrajectoryWindows, read_hdf5, split_episodes, write_hdf5
from vqbet.data.formats.hdf5 import HDF5Writer
from vqbet.policies.acting import to_absolute, to_relative


def random_data(seed=0, lengths=(5, 1, 9, 3), images=False) -> EpisodeData:
    rng = np.random.default_rng(seed)
    episodes = []
    for t in lengths:
        episode = {
            "obs": rng.normal(size=(t, 3)).astype(np.float32),
            "action": rng.normal(size=(t, 2)).astype(np.float32),
        }
        if images:
            episode["images"] = {
                camera: rng.integers(0, 255, size=(t, 8, 8, 3), dtype=np.uint8) for camera in ("top", "side")
            }
        episodes.append(episode)
    return EpisodeData.from_episodes(episodes, attrs={"task_id": "x", "modes": {"[0, 1]": 3}, "n": 4})


def brute_force_window(data, episode, t, to, ta):
    """Item anchored at step t (relative) of an episode, built by explicit loops."""
    ep = data.episode(episode)
    obs, act, mask = [], [], []
    for j in range(to):
        u = max(0, t - (to - 1 - j))
        obs.append(ep["obs"][u])
        row, row_mask = [], []
        for k in range(ta):
            v = u + k
            row_mask.append(v < len(ep["obs"]))
            row.append(ep["action"][min(v, len(ep["obs"]) - 1)])
        act.append(row)
        mask.append(row_mask)
    return np.array(obs), np.array(act), np.array(mask)


@pytest.mark.parametrize(("to", "ta"), [(1, 1), (3, 4), (9, 2), (2, 9)])
def test_windows_equal_brute_force(to, ta):
    data = random_data(seed=to * 10 + ta)
    windows = TrajectoryWindows(data, obs_window=to, action_chunk=ta)
    assert len(windows) == data.num_steps
    i = 0
    for episode in range(data.num_episodes):
        for t in range(len(data.episode(episode)["obs"])):
            item = windows[i]
            obs, act, mask = brute_force_window(data, episode, t, to, ta)
            assert item["obs"].shape == (to, 3) and item["action"].shape == (to, ta, 2)
            assert np.array_equal(item["obs"].numpy(), obs)
            assert np.array_equal(item["action"].numpy(), act)
            assert np.array_equal(item["action_mask"].numpy(), mask)
            i += 1


def test_windows_subset_split_and_loader():
    data = random_data()
    train, val = split_episodes(data.num_episodes, 0.25, seed=0)
    assert len(val) == 1 and sorted(np.concatenate([train, val]).tolist()) == [0, 1, 2, 3]
    windows = TrajectoryWindows(data, 2, 3, episodes=train)
    assert len(windows) == sum(len(data.episode(e)["obs"]) for e in train)
    chunks = windows.action_chunks()
    assert chunks.shape == (len(windows), 3, 2)
    for i in (0, 5, len(windows) - 1):  # each chunk is the last window step's actions
        assert np.array_equal(chunks[i], windows[i]["action"][-1].numpy())
    assert np.array_equal(windows.anchor_obs(), data.obs[windows.steps()])
    # The one relative-actions implementation serves numpy (phase 1) and torch (training, acting).
    relative = to_relative(chunks, windows.anchor_obs(), [2, 0])
    anchors = data.obs[windows.steps()][:, [2, 0]]
    np.testing.assert_allclose(relative, chunks - anchors[:, None], rtol=0, atol=1e-6)
    as_torch = to_relative(torch.from_numpy(chunks), torch.from_numpy(windows.anchor_obs()), [2, 0])
    np.testing.assert_array_equal(as_torch.numpy(), relative)
    np.testing.assert_allclose(to_absolute(relative, windows.anchor_obs(), [2, 0]), chunks, atol=1e-6)
    loader = torch.utils.data.DataLoader(windows, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["obs"].shape == (4, 2, 3) and batch["action_mask"].dtype == torch.bool


def test_hdf5_round_trip_is_exact(tmp_path):
    data = random_data(images=True)
    path = write_hdf5(tmp_path / "d.hdf5", data)
    assert [p.name for p in tmp_path.iterdir()] == ["d.hdf5"]  # no temp file left
    back = read_hdf5(path)
    assert np.array_equal(back.obs, data.obs) and np.array_equal(back.action, data.action)
    assert np.array_equal(back.episode_ends, data.episode_ends)
    assert back.attrs == data.attrs
    assert sorted(back.images) == ["side", "top"]
    assert all(isinstance(f, h5py.Dataset) for f in back.images.values())  # on disk until indexed
    with h5py.File(path) as f:
        assert f["images/top"].chunks == (1, 8, 8, 3) and f["images/top"].compression == "lzf"
    windows = TrajectoryWindows(back, 3, 2, cameras=["top", "side"])
    for i in (0, 7, len(windows) - 1):  # episode starts repeat the first frame, like the state
        obs_idx, _, _ = windows.indices(i)
        item = windows[i]["obs"]
        assert np.array_equal(item["state"].numpy(), data.obs[obs_idx])
        for camera in ("top", "side"):
            assert item[camera].dtype == torch.uint8
            assert np.array_equal(item[camera].numpy(), data.images[camera][obs_idx])
    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=4)))
    assert batch["obs"]["top"].shape == (4, 3, 8, 8, 3) and batch["obs"]["state"].shape == (4, 3, 3)
    loaded = read_hdf5(path, load_images=True)
    assert all(np.array_equal(loaded.images[c], data.images[c]) for c in ("top", "side"))


def test_env_state_round_trips_and_windows_carry_it_at_the_obs_steps(tmp_path):
    data = random_data()
    env_state = np.random.default_rng(1).normal(size=(data.num_steps, 5)).astype(np.float32)
    data = EpisodeData(data.obs, data.action, data.episode_ends, attrs=data.attrs, env_state=env_state)
    back = read_hdf5(write_hdf5(tmp_path / "d.hdf5", data))
    assert np.array_equal(back.env_state, env_state)
    assert read_hdf5(write_hdf5(tmp_path / "plain.hdf5", random_data())).env_state is None
    windows = TrajectoryWindows(back, 3, 2)
    for i in (0, 7, len(windows) - 1):
        assert np.array_equal(windows[i]["env_state"].numpy(), env_state[windows.indices(i)[0]])
    assert "env_state" not in TrajectoryWindows(random_data(), 3, 2)[0]
    with pytest.raises(ValueError, match=r"'obs' has \d+ steps but 'env_state' has 4: lengths must match"):
        EpisodeData(data.obs, data.action, data.episode_ends, env_state=env_state[:4])
    with pytest.raises(ValueError, match="'env_state' holds NaN or inf"):
        EpisodeData(data.obs, data.action, data.episode_ends, env_state=env_state * np.nan)
    with (
        pytest.raises(ValueError, match="lacks env_state, the first had it"),
        HDF5Writer(tmp_path / "e.hdf5") as w,
    ):
        w.append({"obs": data.obs[:5], "action": data.action[:5], "env_state": env_state[:5]})
        w.append({"obs": data.obs[:5], "action": data.action[:5]})


def test_the_writer_streams_episodes_into_the_file_that_write_hdf5_writes(tmp_path):
    data = random_data(images=True)
    with HDF5Writer(tmp_path / "s.hdf5") as writer:
        for i in range(data.num_episodes):
            episode = data.episode(i)
            start, end = int(data.episode_ends[i]) - len(episode["obs"]), int(data.episode_ends[i])
            images = {c: frames[start:end] for c, frames in data.images.items()}
            writer.append({"obs": episode["obs"], "action": episode["action"], "images": images})
            with h5py.File(writer._tmp, "r") as f:  # on disk as it arrives, not held until the end
                assert f["images/top"].shape[0] == end
            assert not (tmp_path / "s.hdf5").exists()  # the file appears only when complete
        writer.attrs.update(data.attrs)
    streamed = read_hdf5(tmp_path / "s.hdf5", load_images=True)
    whole = read_hdf5(write_hdf5(tmp_path / "w.hdf5", data), load_images=True)
    for back in (streamed, whole):
        assert np.array_equal(back.obs, data.obs) and np.array_equal(back.action, data.action)
        assert np.array_equal(back.episode_ends, data.episode_ends) and back.attrs == data.attrs
        assert all(np.array_equal(back.images[c], data.images[c]) for c in ("top", "side"))


def test_the_writer_refuses_mismatched_episodes_and_leaves_no_file(tmp_path):
    data = random_data(images=True)
    first = {"obs": data.obs[:5], "action": data.action[:5], "images": {"top": data.images["top"][:5]}}
    cases = [
        (
            {**first, "images": {"side": data.images["side"][:5]}},
            r"has cameras \['side'\], the first had \['top'\]",
        ),
        ({**first, "obs": data.obs[:5, :2]}, r"'obs' has shape \(5, 2\), expected \(5, 3\)"),
        ({**first, "action": data.action[:4]}, r"'action' has shape \(4, 2\), expected \(5, 2\)"),
        ({**first, "env_state": data.obs[:5]}, "episode 1 has env_state, the first did not"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message), HDF5Writer(tmp_path / "d.hdf5") as writer:
            writer.append(first)
            writer.append(bad)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no episode was written"), HDF5Writer(tmp_path / "d.hdf5"):
        pass
    with pytest.raises(KeyboardInterrupt), HDF5Writer(tmp_path / "d.hdf5") as writer:
        writer.append(first)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_minari_round_trip_is_exact(tmp_path):
    pytest.importorskip("minari")
    from vqbet.data.formats.minari import export_minari, read_minari

    data = random_data()
    export_minari(data, "vqbet/test/expert-v0", root=tmp_path)
    back = read_minari("vqbet/test/expert-v0", root=tmp_path)
    assert np.array_equal(back.obs, data.obs) and np.array_equal(back.action, data.action)
    assert np.array_equal(back.episode_ends, data.episode_ends)
    assert back.attrs == data.attrs
    with pytest.raises(FileNotFoundError, match="not found locally"):
        read_minari("vqbet/test/missing-v0", root=tmp_path)


def write_raw(path, **arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def good_arrays():
    return {
        "obs": np.zeros((6, 3), np.float32),
        "action": np.zeros((6, 2), np.float32),
        "episode_ends": np.array([2, 6]),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"obs": None}, r"missing key\(s\) \['obs'\]"),
        ({"episode_ends": None}, "episode_ends"),
        ({"obs": np.full((6, 3), np.nan, np.float32)}, "'obs' holds NaN or inf"),
        ({"action": np.full((6, 2), np.inf, np.float32)}, "'action' holds NaN or inf"),
        ({"episode_ends": np.array([4, 2])}, "strictly increasing"),
        ({"episode_ends": np.array([2, 9])}, "ends at 9, but there are 6 steps"),
        ({"episode_ends": np.array([], dtype=np.int64)}, "at least one episode"),
        ({"action": np.zeros((5, 2), np.float32)}, "lengths must match"),
        ({"obs": np.zeros(6, np.float32)}, "must be 2-D"),
    ],
)
def test_bad_files_raise_naming_file_and_key(tmp_path, change, message):
    arrays = good_arrays()
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp_path / "bad.hdf5"
    write_raw(path, **arrays)
    with pytest.raises(ValueError, match=message) as err:
        read_hdf5(path)
    assert "bad.hdf5" in str(err.value)


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_hdf5(tmp_path / "nope.hdf5")
    path = tmp_path / "good.hdf5"
    write_raw(path, **good_arrays())
    raw = path.read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.hdf5"):
        read_hdf5(tmp_path / "cut.hdf5")
    (tmp_path / "text.hdf5").write_text("obs,action\n1,2\n")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_hdf5(tmp_path / "text.hdf5")


def test_window_arguments_are_checked():
    data = random_data()
    with pytest.raises(ValueError, match="obs_window"):
        TrajectoryWindows(data, 0, 1)
    with pytest.raises(ValueError, match=r"camera\(s\) \['top'\] asked for, but the dataset holds \[\]"):
        TrajectoryWindows(data, 1, 1, cameras=["top"])
    with pytest.raises(ValueError, match="episode indices"):
        TrajectoryWindows(data, 1, 1, episodes=[7])
    longest = r"longer than every episode chosen \(4 episodes of 1 to 9 steps\): every window would be padded"
    with pytest.raises(ValueError, match=rf"action_chunk 10 is {longest}; set action_chunk to at most 9"):
        TrajectoryWindows(data, 2, 10)
    with pytest.raises(ValueError, match=rf"obs_window 10 is {longest}"):
        TrajectoryWindows(data, 10, 2)
    with pytest.raises(ValueError, match=r"action_chunk 4 is longer than every episode chosen \(2 episodes"):
        TrajectoryWindows(data, 1, 4, episodes=[1, 3])  # the episodes of 1 and 3 steps
