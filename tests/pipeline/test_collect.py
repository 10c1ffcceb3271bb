"""scripts/collect.py: parallel collection writes a complete dataset with its metadata."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from vqbet.data import read_hdf5

ROOT = Path(__file__).resolve().parents[2]


def test_collect_script_writes_dataset(tmp_path):
    out = tmp_path / "mr.hdf5"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/collect.py",
            "episodes=6",
            "workers=2",
            "images=true",
            f"out={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = read_hdf5(out, load_images=True)
    assert data.num_episodes == 6 and data.attrs["task_id"] == "vqbet/MultiReach-v0"
    assert data.attrs["expert_success_rate"] == 1.0 and data.attrs["kept_seeds"] == [0, 1, 2, 3, 4, 5]
    assert sum(data.attrs["mode_histogram"].values()) == 6
    assert "mujoco" in data.attrs["versions"]
    assert data.image.shape == (data.num_steps, 96, 96, 3) and data.image.std() > 10
    # Same seeds in one process give the same data: collection is deterministic.
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.rollout import expert_episode

    episode = expert_episode(gym.make("vqbet/MultiReach-v0"), seed=2)
    assert np.array_equal(data.episode(2)["obs"], episode["obs"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_perturbed_episode_records_the_clean_expert_actions():
    """DART collection: the env executes noisy actions, the dataset keeps what the expert chose."""
    import gymnasium as gym
    import pytest

    import envs  # noqa: F401
    from envs.experts import make_expert
    from envs.rollout import expert_episode

    env = gym.make("vqbet/BlockPush-v0")
    clean = expert_episode(env, seed=4)
    noisy = expert_episode(env, seed=4, perturb=0.03, perturb_hold=5)
    again = expert_episode(env, seed=4, perturb=0.03, perturb_hold=5)
    assert np.array_equal(noisy["obs"], again["obs"]) and np.array_equal(noisy["action"], again["action"])
    n = min(clean["length"], noisy["length"])
    assert np.abs(noisy["obs"][:n, :2] - clean["obs"][:n, :2]).max() > 0.02  # the noise moved the pusher
    # Replaying the recorded observations through a fresh expert with the same seed gives back the
    # recorded actions (up to the float32 storage of obs): the expert's choices, without the noise.
    env.reset(seed=4)
    expert = make_expert(env, 4)
    expert.reset()
    replay = np.stack([np.asarray(expert.act(o), dtype=np.float32) for o in noisy["obs"]])
    np.testing.assert_allclose(replay, noisy["action"], atol=1e-4)
    with pytest.raises(ValueError, match="perturb"):
        expert_episode(env, seed=4, perturb=-0.1)
    with pytest.raises(ValueError, match="perturb_hold"):
        expert_episode(env, seed=4, perturb=0.1, perturb_hold=0)
