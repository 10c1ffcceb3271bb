"""vqbet/Kitchen-v0: the Franka Kitchen world on mujoco 4, its action semantics and its sub-task
and order bookkeeping."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")
if __import__("importlib").util.find_spec("gymnasium_robotics") is None:
    pytest.skip('needs the kitchen assets: pip install "vqbet[kitchen]"', allow_module_level=True)

import envs  # noqa: F401
from envs.kitchen import BONUS_THRESH, OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES, TASKS


def rollout(seed: int, steps: int = 30) -> np.ndarray:
    env = gym.make("vqbet/Kitchen-v0")
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = [obs]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(-1, 1, 9).astype(np.float32))
        trace.append(obs)
    return np.stack(trace)


def test_spaces_and_seeded_determinism():
    env = gym.make("vqbet/Kitchen-v0")
    assert env.observation_space.shape == (59,) and env.action_space.shape == (9,)
    assert env.spec.max_episode_steps == 600 and env.unwrapped.num_modes == 24
    a, b, c = rollout(3), rollout(3), rollout(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a[-1, :7] - a[0, :7]).max() > 0.1  # the arm moved


def test_actions_are_joint_velocities_integrated_into_position_targets():
    env = gym.make("vqbet/Kitchen-v0", robot_noise_ratio=0.0, object_noise_ratio=0.0)
    env.reset(seed=0)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(3):
        action = rng.uniform(-1.5, 1.5, 9)  # beyond [-1, 1] on purpose: clipped
        before = u.data.qpos[:9].copy()
        env.step(action)
        velocity = 2.0 * np.clip(action, -1, 1)  # within the +-10 velocity bounds
        expected = np.clip(before + velocity * u.dt, u.pos_bound[:, 0], u.pos_bound[:, 1])
        np.testing.assert_allclose(u.data.ctrl[:9], expected, rtol=0, atol=1e-12)
    start = u.data.qpos[0]
    for _ in range(5):
        env.step(np.array([0.5, *[0.0] * 8]))
    assert u.data.qpos[0] - start > 0.1  # the servo follows the targets (with lag)


def test_subtasks_are_recorded_in_completion_order_and_all_four_succeed():
    env = gym.make("vqbet/Kitchen-v0", robot_noise_ratio=0.0, object_noise_ratio=0.0)
    env.reset(seed=0)
    u = env.unwrapped
    for count, task in enumerate(("light switch", "microwave", "hinge cabinet", "slide cabinet"), start=1):
        qpos = u.data.qpos.copy()
        qpos[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        u.set_state(qpos, np.zeros_like(u.data.qvel))
        _, reward, terminated, _, info = env.step(np.zeros(9, np.float32))
        assert u.task_distance(task) < BONUS_THRESH
        assert info["tasks_completed"] == count and reward == 1.0 and info[f"p{count}"]
        assert terminated == (count == 4) and info["is_success"] == (count == 4)
    assert info["order"] == (
        TASKS.index("light switch"),
        TASKS.index("microwave"),
        TASKS.index("hinge cabinet"),
        TASKS.index("slide cabinet"),
    )


def test_a_nan_action_ends_the_episode_unstable():
    env = gym.make("vqbet/Kitchen-v0")
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(np.full(9, np.nan, np.float32))
    assert terminated and info["unstable"] and not info["is_success"] and np.isfinite(obs).all()
    with pytest.raises(ValueError, match=r"action must have shape \(9,\)"):
        env.step(np.zeros(2))


def test_the_arm_controller_brings_the_finger_pads_to_a_pose():
    from envs.experts.arm import ArmController

    env = gym.make("vqbet/Kitchen-v0")
    env.reset(seed=0)
    arm = ArmController(env.unwrapped)
    arm.reset()
    target = arm.pad() + np.array([-0.1, 0.15, 0.1])
    rotation = arm.orientation()
    for _ in range(40):
        action = arm.action(target, rotation, grip=1.0, speed=0.5)
        assert action.shape == (9,) and np.abs(action).max() <= 1.0
        env.step(action)
    assert np.linalg.norm(arm.pad() - target) < 0.01
    turned = arm.orientation().T @ rotation
    assert np.arccos(np.clip((np.trace(turned) - 1) / 2, -1, 1)) < 0.05  # orientation held


@pytest.mark.parametrize("seed", [0, 3])
def test_the_expert_completes_all_four_subtasks_in_its_chosen_order(seed):
    from envs.rollout import expert_episode

    env = gym.make("vqbet/Kitchen-v0")
    episode = expert_episode(env, seed)
    assert episode["success"] and episode["info"]["tasks_completed"] == 4
    assert episode["order"] == episode["mode"] and sorted(episode["mode"]) == [0, 1, 2, 3]
    assert episode["length"] < env.spec.max_episode_steps
    again = expert_episode(env, seed)
    assert np.array_equal(episode["action"], again["action"])  # seeded: same demonstration
    other = expert_episode(env, seed + 1)
    assert other["mode"] != episode["mode"] or not np.array_equal(other["action"], episode["action"])


def test_a_stalled_pull_is_given_up_early_and_a_slowing_one_is_not():
    from envs.experts.kitchen import Stall

    angle = [0.0]
    stall = Stall(lambda: angle[0], sign=-1.0, patience=3, progress=0.01, early=0.2)
    assert [stall() for _ in range(3)] == [False, False, True]  # the door never moved
    angle[0] = 0.0
    stall = Stall(lambda: angle[0], sign=-1.0, patience=3, progress=0.01, early=0.2)
    for _ in range(10):  # opening (negative angles for this door): never stalled
        angle[0] -= 0.05
        assert not stall()
    assert not any(stall() for _ in range(5))  # slowed down after 0.5 rad of opening: keep pulling
