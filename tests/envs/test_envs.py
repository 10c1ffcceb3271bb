"""The MuJoCo tasks: Gymnasium conformance, determinism, experts, rendering."""

import collections
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.experts import EXPERTS
from envs.rollout import expert_episode

TASKS = sorted(envs.TASKS)
WITH_EXPERTS = sorted(EXPERTS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env_passes(task):
    env = gym.make(f"vqbet/{task}-v0")
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("task", WITH_EXPERTS)
def test_same_seed_same_trajectory(task):
    env = gym.make(f"vqbet/{task}-v0")
    a, b = expert_episode(env, seed=7), expert_episode(env, seed=7)
    assert np.array_equal(a["obs"], b["obs"]) and np.array_equal(a["action"], b["action"])
    c = expert_episode(env, seed=8)
    assert not np.array_equal(a["obs"][:5], c["obs"][:5])  # the seed matters


@pytest.mark.parametrize(
    ("task", "episodes", "target"), [("MultiReach", 30, 0.95), ("BlockPush", 20, 0.95), ("PushT", 10, 0.9)]
)
def test_expert_meets_target_and_covers_modes(task, episodes, target):
    env = gym.make(f"vqbet/{task}-v0")
    results = [expert_episode(env, seed=1000 + i) for i in range(episodes)]
    assert sum(r["success"] for r in results) >= math.ceil(target * episodes)
    orders = collections.Counter(r["order"] for r in results if r["success"])
    assert len(orders) >= min(env.unwrapped.num_modes, episodes) * 0.5
    first = results[0]["info"]
    assert first["is_success"] and "order" in first


def test_multireach_progress_info():
    env = gym.make("vqbet/MultiReach-v0")
    _, info = env.reset(seed=0)
    assert info["goals_reached"] == 0 and info["order"] == () and not info["p1"]
    episode = expert_episode(env, seed=0)
    info = episode["info"]
    assert info["goals_reached"] == 4 and all(info[f"p{k}"] for k in range(1, 5))
    assert sorted(info["order"]) == [0, 1, 2, 3] and info["order"] == episode["mode"]


def test_blockpush_order_records_each_placement_once():
    env = gym.make("vqbet/BlockPush-v0")
    info = expert_episode(env, seed=3)["info"]
    assert info["p2"] and len(info["order"]) == 2
    assert {b for b, _ in info["order"]} == {0, 1} and {t for _, t in info["order"]} == {0, 1}


def test_bad_action_shape_raises():
    env = gym.make("vqbet/MultiReach-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step(np.zeros(3))


@pytest.mark.parametrize("task", TASKS)
def test_reset_options_it_does_not_read_are_an_error_not_dropped(task):
    env = gym.make(f"vqbet/{task}-v0")
    first, _ = env.reset(seed=3, options={})  # what vector envs pass after taking reset_mask
    with pytest.raises(ValueError, match=r"reset: unknown option\(s\) \['goal', 'start'\]; it takes none"):
        env.reset(seed=3, options={"start": [0.0, 0.0], "goal": 1})
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)


def test_unstable_simulation_ends_episode_as_failure():
    env = gym.make("vqbet/BlockPush-v0")
    env.reset(seed=0)
    env.unwrapped.data.qvel[:] = np.nan
    _, _, terminated, _, info = env.step(np.zeros(2))
    assert terminated and info["unstable"] and not info["is_success"]


@pytest.mark.parametrize("task", TASKS)
def test_render_96x96_not_blank(task):
    env = gym.make(f"vqbet/{task}-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # walls, pads and bodies, not one colour


def _place_tee(env, xy, yaw, agent):
    u = env.unwrapped
    qpos = u.data.qpos.copy()
    qpos[u.tee_qpos_index] = [xy[0], xy[1], yaw]
    qpos[u.agent_qpos_index] = agent
    u.set_state(qpos, np.zeros_like(u.data.qvel))
    u.data.ctrl[:] = agent


def test_pusht_coverage_is_exact_overlap_and_success_ends_the_episode():
    env = gym.make("vqbet/PushT-v0")
    env.reset(seed=0)
    u = env.unwrapped
    assert u.area == pytest.approx(0.48 * 0.12 + 0.12 * 0.36)
    assert u.coverage_at(u.goal_xy, u.goal_yaw) == pytest.approx(1.0)
    # Shifted along the goal T's own x axis by d: the bar loses d x 0.12 and the stem d x 0.36.
    d = 0.01
    shift = d * np.array([np.cos(u.goal_yaw), np.sin(u.goal_yaw)])
    assert u.coverage_at(u.goal_xy + shift, u.goal_yaw) == pytest.approx(1 - d * 0.48 / u.area)
    assert u.coverage_at(u.goal_xy + 1.0, u.goal_yaw) == 0.0
    _place_tee(env, u.goal_xy, u.goal_yaw, agent=np.array([0.8, -0.8]))
    _, reward, terminated, _, info = env.step(np.array([0.8, -0.8]))
    assert terminated and info["is_success"] and info["coverage"] == pytest.approx(1.0, abs=1e-3)
    assert reward == pytest.approx(info["coverage"]) and info["max_coverage"] >= info["coverage"]


@pytest.mark.parametrize("yaw", [0.0, 2.0])
def test_pusht_reports_the_first_face_touched(yaw):
    env = gym.make("vqbet/PushT-v0")
    env.reset(seed=0)
    u = env.unwrapped
    xy = np.array([-0.5, 0.0])
    down = np.array([np.sin(yaw), -np.cos(yaw)])  # the T's -y axis in the world
    below = xy + down * 0.45  # under the stem's bottom face
    _place_tee(env, xy, yaw, agent=below)
    assert u.face_at(xy + down * 0.3171) == 0
    info = {}
    for _ in range(30):
        _, _, _, _, info = env.step(np.clip(xy, -1, 1))  # drive the pusher up into the stem
        if info["order"]:
            break
    assert info["order"] == (0,) and envs.pusht.FACES[0] == "stem bottom"


def test_experts_read_only_public_env_state():
    """Experts see the env through its public view (positions, indices into qpos, geometry), so a
    change inside an env cannot silently break its expert."""
    import re
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "envs" / "experts"
    for file in folder.glob("*.py"):
        private = re.findall(r"\benv\._\w+", file.read_text())
        assert not private, f"{file.name} reads {private}"
