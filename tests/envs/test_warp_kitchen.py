"""Kitchen on MuJoCo Warp (envs.warp) against CPU MuJoCo (envs.kitchen), on Warp's CPU device.

The `warp` tests compile MuJoCo Warp's kernels the first time (about 1.5 minutes on two cores;
cached in Warp's kernel cache, ~/.cache/warp or $WARP_CACHE_PATH) and step 20 worlds through
expert episodes (minutes): the default run deselects them, `pytest -m warp` runs them.
The tests without the mark check the errors, which must come before anything compiles.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the tasks)
from envs.experts import make_expert
from envs.experts.arm import ArmController
from envs.warp import EXTRA, check_task, load_warp, make_vector_env

SEEDS = range(20)
FREE_TOLERANCE = 1e-4
"""Largest |qpos| gap (rad or m) after 100 env steps (4,000 physics steps) of one contact-free action
sequence. Warp computes in float32 (relative rounding 6e-8) where MuJoCo computes in float64, and
Kitchen's action integrates from the current joint positions, so no rounding error is ever pulled
back: they add up over the 4,000 steps. Measured: 1.7e-5, the kettle settling on its burner (a
resting contact); the arm's joints within 5e-6."""
CONTACT_MEDIAN = 1e-2
"""Median over the 20 expert seeds of the same gap when the 100 steps are the expert's (contacts from
about step 22). A contact that starts a physics step earlier in one simulator (float32 positions,
Warp's own collision routines) turns the hand, and nothing pulls it back: the gaps spread from
1e-5 to tenths of a radian, so only their median is bounded."""


# -- errors before any compile (no mark: these run in the default suite) ---------------------------
@pytest.mark.parametrize("task", ["PushT", "vqbet/BlockPush-v0", "MultiReach", "Cartpole"])
def test_an_unsupported_task_is_named_before_anything_loads(task, monkeypatch):
    monkeypatch.setitem(sys.modules, "warp", None)  # would fail if it were imported
    with pytest.raises(ValueError, match=rf"{task}: no MuJoCo Warp backend .*supported: \['Kitchen'\]"):
        make_vector_env(task, num_envs=4)
    assert check_task("vqbet/Kitchen-v0") == check_task("kitchen") == "Kitchen"


def test_a_missing_warp_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)
    with pytest.raises(ImportError, match=EXTRA.replace("[", r"\[").replace("]", r"\]")):
        load_warp()
    with pytest.raises(ImportError, match="vqbet"):
        make_vector_env("Kitchen", num_envs=4)


def test_no_gpu_falls_back_to_warps_cpu_device_with_a_warning():
    warp, _ = pytest.importorskip("envs.warp").load_warp()
    from envs.warp import resolve_device

    warp.init()
    if warp.is_cuda_available():
        assert resolve_device("auto").startswith("cuda")
        return
    with pytest.warns(RuntimeWarning, match="Warp's CPU device"):
        assert resolve_device("auto") == "cpu"


def test_a_model_feature_warp_lacks_is_named_before_anything_compiles():
    pytest.importorskip("mujoco_warp")
    import mujoco

    from envs.warp.vector import WarpVectorEnv

    class ImplicitEnv:  # what WarpVectorEnv reads of a CPU env, on a model with the PGS solver
        model = mujoco.MjModel.from_xml_string(
            '<mujoco><option solver="PGS"/><worldbody><body><joint/><geom size="0.1"/></body>'
            "</worldbody></mujoco>"
        )
        frame_skip, dt = 1, 0.002
        unwrapped = property(lambda self: self)

    with pytest.raises(ValueError, match="ImplicitEnv: MuJoCo Warp does not support its model: mjSOL_PGS"):
        WarpVectorEnv(2, ImplicitEnv, max_episode_steps=10)


# -- equality with CPU MuJoCo (marked warp) -----------------------------------------------------------
def _expert(seed: int):
    """`act(env, obs, t)` of the scripted expert seeded `seed` (made at t = 0)."""

    def act(env, obs, t):
        if t == 0:
            act.expert = make_expert(env, seed)
            act.expert.reset()
        return act.expert.act(obs)

    return act


def _tracker(phase: float):
    """`act(env, obs, t)`: joint-space tracking of the start posture + 0.25 sin(2 pi t / 60 + phase + j)
    on the 7 arm joints: the arm moves +-0.25 rad and touches nothing."""

    def act(env, obs, t):
        if t == 0:
            act.arm, act.q0 = ArmController(env.unwrapped), env.unwrapped.data.qpos[:7].copy()
        target = act.q0 + 0.25 * np.sin(2 * np.pi * t / 60 + phase + np.arange(7))
        return act.arm.joint_action(target, 1.0, 1.5)

    return act


def _cpu_run(seed: int, act, limit: int | None = 100) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """One CPU episode, stopped after `limit` steps (None: at its end): (actions, qpos after each
    step, final info)."""
    env = gym.make("vqbet/Kitchen-v0")
    obs, info = env.reset(seed=seed)
    actions, qpos = [], []
    done = False
    while not done:
        actions.append(np.asarray(act(env, obs, len(actions)), dtype=np.float32))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        qpos.append(env.unwrapped.data.qpos.copy())
        done = terminated or truncated or len(actions) == limit
    env.close()
    return actions, qpos, info


def _replay(actions: np.ndarray, seeds: list[int]) -> np.ndarray:
    """Actions (T, N, 9) replayed into N Warp worlds: their qpos after each step (T, N, 30)."""
    env = make_vector_env("Kitchen", len(seeds), device="cpu", autoreset_mode="Disabled")
    env.reset(seed=seeds)
    qpos = []
    for action in actions:
        env.step(action)
        qpos.append(env.qpos.double().numpy())
    env.close()
    return np.stack(qpos)


@pytest.mark.warp
def test_joint_positions_agree_after_100_contact_free_steps():
    runs = [_cpu_run(0, _tracker(phase)) for phase in (0.0, 2.0, 4.0)]  # CPU actions, replayed into Warp
    warp_qpos = _replay(np.stack([r[0] for r in runs], axis=1), [0, 0, 0])
    gaps = np.abs(warp_qpos[-1] - np.stack([r[1][-1] for r in runs]))  # (3, 30)
    gap = gaps.max(axis=1)
    print(f"contact-free, after 100 steps: |qpos| gap {gap}, arm joints {gaps[:, :9].max(axis=1)}")
    assert gap.max() < FREE_TOLERANCE


@pytest.mark.warp
def test_joint_positions_after_100_expert_steps_with_contacts():
    runs = [_cpu_run(seed, _expert(seed)) for seed in SEEDS]
    warp_qpos = _replay(np.stack([r[0] for r in runs], axis=1), list(SEEDS))
    gaps = np.array([[np.abs(warp_qpos[t, w] - r[1][t]).max() for t in (9, 99)] for w, r in enumerate(runs)])
    after = gaps[:, 1]
    print(f"expert: after 10 steps max {gaps[:, 0].max():.1e}; after 100: median {np.median(after):.1e}, ")
    print(f"max {after.max():.1e}, per seed {np.array2string(after, precision=1)}")
    assert gaps[:, 0].max() < FREE_TOLERANCE  # before the hand touches anything (by step 22 it may)
    assert np.median(after) < CONTACT_MEDIAN


def _warp_expert_episodes(seeds: list[int]) -> list[dict]:
    """The scripted expert in Warp worlds, closed loop: each world's expert acts on a CPU copy of
    that world's state and completion record, as it acts on the CPU env's own."""
    env = make_vector_env("Kitchen", len(seeds), device="cpu", autoreset_mode="Disabled")
    obs, info = env.reset(seed=seeds)
    shadows = [gym.make("vqbet/Kitchen-v0").unwrapped for _ in seeds]

    def mirror() -> None:
        qpos, qvel = env.world_state(list(range(len(seeds))))
        for w, shadow in enumerate(shadows):
            shadow.set_state(qpos[w], qvel[w])
            shadow.completed = [int(x) for x in info["order"][w] if x >= 0]

    for shadow, seed in zip(shadows, seeds, strict=True):
        shadow.reset(seed=seed)
    mirror()
    experts = [make_expert(shadow, seed) for shadow, seed in zip(shadows, seeds, strict=True)]
    for expert in experts:
        expert.reset()
    ended: dict[int, dict] = {}
    steps = 0
    while len(ended) < len(seeds):
        actions = np.stack([e.act(o) for e, o in zip(experts, obs.numpy(), strict=True)]).astype(np.float32)
        obs, _, terminated, truncated, info = env.step(actions)
        steps += 1
        mirror()
        for w in np.flatnonzero((terminated | truncated).numpy()):
            order = tuple(int(x) for x in info["order"][w] if x >= 0)
            ended.setdefault(
                int(w), {"is_success": bool(info["is_success"][w]), "order": order, "length": steps}
            )
    env.close()
    return [ended[w] for w in range(len(seeds))]


MARGINAL = 2
"""Expert episodes of the 20 that may end otherwise on Warp: seeds 14 and 15 do. They are the expert's
marginal episodes on CPU MuJoCo (a success after retries at step 563 of 600, and its one failure), and
MuJoCo Warp's collision routines find other contacts between the cylinder handles and the finger
pads in the same state (two where MuJoCo finds one), which decides whether a grasp holds."""


@pytest.mark.warp
def test_expert_episodes_end_with_the_same_success_and_order():
    """Closed loop, as the expert collects demonstrations. Its actions replayed open loop would not
    do: replayed into CPU MuJoCo itself from the start rounded to float32, 6 of these 20 episodes end
    otherwise, where the expert acting on its own state ends all 20 the same."""
    cpu = []
    for seed in SEEDS:
        actions, _, info = _cpu_run(seed, _expert(seed), limit=None)
        cpu.append({"is_success": info["is_success"], "order": tuple(info["order"]), "length": len(actions)})
    warp = _warp_expert_episodes(list(SEEDS))
    differ = [seed for seed, c, w in zip(SEEDS, cpu, warp, strict=True) if c != w | {"length": c["length"]}]
    successes = sum(c["is_success"] for c in cpu), sum(w["is_success"] for w in warp)
    for seed in differ:
        print(f"seed {seed}: CPU {cpu[seed]}, Warp {warp[seed]}")
    print(f"expert episodes: successes CPU {successes[0]}/20, Warp {successes[1]}/20; {len(differ)} differ")
    lengths = [abs(w["length"] - c["length"]) for c, w in zip(cpu, warp, strict=True)]
    print(f"episode lengths differ by {lengths} steps (a retried grasp takes longer)")
    assert len(differ) <= MARGINAL, differ
    assert abs(successes[0] - successes[1]) <= 1


@pytest.fixture(scope="module")
def small_env():
    pytest.importorskip("mujoco_warp")
    env = make_vector_env("Kitchen", 3, device="cpu")
    yield env
    env.close()


@pytest.mark.warp
def test_observations_hold_the_state_plus_seeded_noise_within_its_amplitude(small_env):
    env = small_env
    obs, info = env.reset(seed=[7, 8, 7])
    assert obs.shape == (3, 59) and obs.dtype.is_floating_point and not info["is_success"].any()
    qpos, qvel = env.qpos, env.qvel
    state = np.concatenate([qpos[:, :9], qvel[:, :9], qpos[:, 9:], qvel[:, 9:]], axis=1)
    pos_amp, vel_amp = env.cpu_env.noise_amplitudes()
    amp = np.concatenate([pos_amp[:9], vel_amp[:9], pos_amp[9:], vel_amp[9:]])
    noise = obs.numpy() - state
    assert (np.abs(noise) <= amp + 1e-6).all()
    assert np.abs(noise[:, :9]).max() > 0.1 * amp[:9].max()  # there is noise
    assert np.array_equal(obs[0], obs[2]) and not np.array_equal(obs[0], obs[1])  # by seed, not by world
    again, _ = env.reset(seed=[8, 7, 7])
    assert np.array_equal(again[0], obs[1]) and np.array_equal(again[1], obs[0])


@pytest.mark.warp
def test_a_non_finite_action_ends_that_episode_unstable_and_next_step_autoresets_it(small_env):
    env = small_env
    env.reset(seed=0)
    action = np.zeros((3, 9), dtype=np.float32)
    action[1, 2] = np.nan
    _, reward, terminated, truncated, info = env.step(action)
    assert terminated.tolist() == [False, True, False] and not truncated.any()
    assert info["unstable"].tolist() == [False, True, False] and not info["is_success"].any()
    assert np.isfinite(env.qpos.numpy()).all()
    np.testing.assert_allclose(env.qpos[1].numpy(), env.cpu_env.model.qpos0, atol=1e-6)  # mj_resetData
    _, reward, terminated, truncated, _ = env.step(np.zeros((3, 9), dtype=np.float32))
    assert reward.tolist() == [0.0, 0.0, 0.0] and not (terminated | truncated).any()
    assert env.elapsed.tolist() == [2, 0, 2]  # world 1 started a new episode
    np.testing.assert_allclose(env.qpos[1].numpy(), env.cpu_env.init_qpos, atol=1e-6)


@pytest.mark.warp
def test_episodes_are_truncated_at_the_limit(small_env):
    env = small_env
    env.reset(seed=0)
    env.max_episode_steps = 2
    try:
        still = np.zeros((3, 9), dtype=np.float32)
        assert not env.step(still)[3].any()
        assert env.step(still)[3].all()
    finally:
        env.max_episode_steps = 600


@pytest.mark.warp
def test_bad_actions_and_options_are_named(small_env):
    env = small_env
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(3, 9\)"):
        env.step(np.zeros((2, 9), dtype=np.float32))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]"):
        env.reset(options={"bogus": 1})
    with pytest.raises(ValueError, match="3 worlds"):
        env.reset(seed=[1, 2])
