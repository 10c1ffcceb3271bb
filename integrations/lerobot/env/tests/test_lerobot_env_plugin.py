"""The LeRobot env plug-in lerobot_env_vqbetlib, run with LeRobot's own code (factory, observation
preprocessing, eval loop, lerobot-eval CLI).

Run with the Python that has lerobot 0.6.1, vqbet and the plug-in installed:

    /work/lerobot-venv/bin/python -m pytest integrations/lerobot/env/tests
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("lerobot")
pytest.importorskip("lerobot_env_vqbetlib")

import gymnasium as gym
import numpy as np
import torch
from lerobot.configs import FeatureType
from lerobot.envs.factory import make_env, make_env_config
from lerobot.envs.utils import NEW_ROLLOUT_OPTION, env_to_policy_features, preprocess_observation
from lerobot_env_vqbetlib.specs import CAMERAS, TASKS

import envs
from envs.cameras import CAMERAS as ENV_CAMERAS
from envs.experts import make_expert
from envs.rollout import expert_episode

CASES = [  # (env type, options): every obs type, and every task at least once
    ("vqbetlib_multireach", {}),
    ("vqbetlib_blockpush", {"obs_type": "pixels", "cameras": ["top", "side"]}),
    ("vqbetlib_pusht", {"obs_type": "pixels_agent_pos", "environment_state": True}),
    ("vqbetlib_pusht", {"obs_type": "pixels_state", "observation_width": 64, "observation_height": 48}),
    ("vqbetlib_kitchen", {}),
    ("vqbetlib_kitchen", {"obs_type": "pixels_state"}),
]


def _vector_env(cfg: Any) -> gym.vector.VectorEnv:
    (suite,) = make_env(cfg, n_envs=2).values()
    return suite[0]


def test_plugin_is_discovered_by_lerobot() -> None:
    """A fresh interpreter: LeRobot's start-up import of "lerobot_env_*" distributions registers
    the four env types (nothing imported by hand)."""
    code = (
        "from lerobot.utils.import_utils import register_third_party_plugins\n"
        "from lerobot.envs.configs import EnvConfig\n"
        "register_third_party_plugins()\n"
        "print(sorted(k for k in EnvConfig.get_known_choices() if k.startswith('vqbetlib_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(sorted(TASKS))


def test_specs_match_the_tasks() -> None:
    """The sizes the configs declare (without making an env) are the envs' own."""
    assert sorted(ENV_CAMERAS) == sorted(CAMERAS)
    for spec in TASKS.values():
        env = gym.make(f"vqbet/{spec.name}-v0")
        try:
            assert env.observation_space.shape == (spec.state_dim,)
            assert env.action_space.shape == (spec.action_dim,)
            assert env.spec.max_episode_steps == spec.episode_length == envs.TASKS[spec.name][1]
            assert env.unwrapped.metadata["render_fps"] == spec.fps
        finally:
            env.close()


@pytest.mark.parametrize(("env_type", "options"), CASES)
def test_observations_have_the_feature_shapes(env_type: str, options: dict[str, Any]) -> None:
    """make_env + LeRobot's preprocess_observation give exactly the config's policy features:
    (2, *shape) float32, images channel-first in [0, 1]; the values are the task's own."""
    cfg = make_env_config(env_type, **options)
    features = env_to_policy_features(cfg)
    vec = _vector_env(cfg)
    try:
        raw, info = vec.reset(seed=[0, 1], options={NEW_ROLLOUT_OPTION: True})
        obs = preprocess_observation(raw)
        assert set(obs) == {k for k, f in features.items() if f.type is not FeatureType.ACTION}
        for key, value in obs.items():
            assert value.dtype == torch.float32, key
            assert tuple(value.shape) == (2, *features[key].shape), key
            if features[key].type is FeatureType.VISUAL:
                assert value.min() >= 0.0 and value.max() <= 1.0 and value.std() > 0, key
        assert tuple(features["action"].shape) == vec.single_action_space.shape
        tasks = [e.unwrapped for e in vec.envs]
        if "observation.environment_state" in obs:
            expected = np.stack([t.state_vector() for t in tasks])
            np.testing.assert_allclose(obs["observation.environment_state"], expected, rtol=1e-6)
        if cfg.obs_type == "pixels_agent_pos":
            expected = np.stack([t.agent_pos for t in tasks])
            np.testing.assert_allclose(obs["observation.state"], expected, rtol=1e-6)
        pixels = raw.get("pixels")  # each image: the channel-first float of the env's uint8 frame
        frames = pixels if isinstance(pixels, dict) else {} if pixels is None else {None: pixels}
        for camera, frame in frames.items():
            key = "observation.image" if camera is None else f"observation.images.{camera}"
            torch.testing.assert_close(obs[key], torch.from_numpy(frame).permute(0, 3, 1, 2) / 255)
        assert info["is_success"].dtype == bool and not info["is_success"].any()
        raw, reward, _, _, info = vec.step(np.zeros((2, *vec.single_action_space.shape)))
        assert set(preprocess_observation(raw)) == set(obs)
        assert reward.shape == (2,) and info["is_success"].dtype == bool
        assert "order" in info and all(o == () for o in info["order"])
    finally:
        vec.close()


@pytest.mark.parametrize(
    ("env_kwargs", "images", "options"),
    [
        ({}, False, {}),
        ({"obs_mode": "pixels+agent", "cameras": ["top"]}, False, {"obs_type": "pixels_agent_pos"}),
        ({"render_mode": "rgb_array"}, True, {"obs_type": "pixels_state"}),
    ],
)
def test_exported_features_are_the_env_features(
    tmp_path: Path, env_kwargs: dict[str, Any], images: bool, options: dict[str, Any]
) -> None:
    """A collection exported by vqbet's LeRobot export (as `scripts/convert.py ... to=lerobot`)
    has, read as LeRobot reads a dataset's policy features, the features of the matching env type
    and options: a policy trained on it runs on the env without a rename map. Camera collections
    also export the state vector (observation.environment_state): `environment_state=true`."""
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from vqbet.data import EpisodeData, export_lerobot

    env = gym.make("vqbet/MultiReach-v0", max_episode_steps=4, **env_kwargs)
    try:
        episodes = [expert_episode(env, seed, images=images) for seed in range(2)]
    finally:
        env.close()
    folder = export_lerobot(EpisodeData.from_episodes(episodes), tmp_path / "export", fps=20)
    exported = json.loads((folder / "meta" / "info.json").read_text())["features"]
    dataset = {k: (f.type, tuple(f.shape)) for k, f in dataset_to_policy_features(exported).items()}
    if options.get("obs_type") == "pixels_agent_pos":
        options["environment_state"] = True
    cfg = make_env_config("vqbetlib_multireach", **options)
    assert {k: (f.type, tuple(f.shape)) for k, f in env_to_policy_features(cfg).items()} == dataset


@pytest.mark.parametrize(
    ("env_type", "options", "option"),
    [
        ("vqbetlib_kitchen", {"obs_type": "pixels_agent_pos"}, "obs_type"),
        ("vqbetlib_kitchen", {"obs_type": "pixels"}, "obs_type"),
        ("vqbetlib_pusht", {"obs_type": "rgb"}, "obs_type"),
        ("vqbetlib_pusht", {"obs_type": "pixels", "cameras": ["front"]}, "cameras"),
        ("vqbetlib_pusht", {"obs_type": "pixels", "cameras": ["top", "top"]}, "cameras"),
        ("vqbetlib_multireach", {"environment_state": True}, "environment_state"),
        ("vqbetlib_multireach", {"task": "PushT-v0"}, "task"),
        ("vqbetlib_multireach", {"episode_length": 0}, "episode_length"),
        ("vqbetlib_blockpush", {"obs_type": "pixels_state", "observation_width": 0}, "observation_width"),
    ],
)
def test_bad_options_name_the_option(env_type: str, options: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match=rf"{env_type}: --env\.{option}"):
        make_env_config(env_type, **options)


def test_the_gym_id_checks_its_options_too() -> None:
    """gym.make of the plug-in's ids (what LeRobot's workers call) refuses what the config does."""
    with pytest.raises(ValueError, match=r"--env\.obs_type"):
        gym.make(TASKS["vqbetlib_kitchen"].gym_id, obs_type="pixels_agent_pos")


def test_expert_episode_succeeds_through_the_wrapper() -> None:
    """MultiReach's scripted expert, acting on the wrapper's observation.state, succeeds: the
    episode terminates with info["is_success"] a Python True, and the visiting order, p1..p4 and
    goals_reached come through in `info`."""
    cfg = make_env_config("vqbetlib_multireach")
    env = gym.make(cfg.gym_id, disable_env_checker=True, **cfg.gym_kwargs)
    try:
        obs, info = env.reset(seed=3, options={NEW_ROLLOUT_OPTION: True})
        assert info["is_success"] is False and info["order"] == ()
        expert = make_expert(env, seed=3)
        expert.reset()
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            state = obs["agent_pos"].astype(np.float64)  # (6,): the task's state vector
            np.testing.assert_allclose(state, env.unwrapped.state_vector(), rtol=1e-6)
            obs, _, terminated, truncated, info = env.step(expert.act(state))
            steps += 1
        assert terminated and not truncated and steps < cfg.episode_length
        assert info["is_success"] is True
        assert info["order"] == expert.mode and sorted(info["order"]) == [0, 1, 2, 3]
        assert info["goals_reached"] == 4 and all(info[f"p{k}"] for k in range(1, 5))
    finally:
        env.close()


def _identity(x: Any) -> Any:
    return x


def _lerobot_eval(cfg: Any, policy: Any, n_episodes: int) -> dict[str, Any]:
    """LeRobot's own evaluation loop (eval_policy_all, what lerobot-eval runs) over make_env."""
    from lerobot.scripts.lerobot_eval import eval_policy_all

    envs_ = make_env(cfg, n_envs=2)
    try:
        return eval_policy_all(
            envs_, policy, _identity, _identity, _identity, _identity, n_episodes, start_seed=0
        )
    finally:
        for suite in envs_.values():
            for vec in suite.values():
                vec.close()


def _expert_policy(cfg: Any) -> Any:
    """A LeRobot policy that runs MultiReach's expert per sub-env on observation.state (B, 6), or
    holds still (`expert=False`)."""
    from lerobot.policies.pretrained import PreTrainedPolicy
    from lerobot.policies.vqbet.configuration_vqbet import VQBeTConfig

    class ExpertPolicy(PreTrainedPolicy):
        config_class = VQBeTConfig
        name = "vqbetlib_test_expert"

        def __init__(self, expert: bool) -> None:
            super().__init__(VQBeTConfig(device="cpu"))
            self.expert = expert
            self.experts: list[Any] | None = None
            self.env: Any = gym.make(cfg.gym_id, **cfg.gym_kwargs)  # what the experts read: dt

        def reset(self) -> None:
            self.experts = None

        def select_action(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
            state = batch["observation.state"].double().numpy()
            if not self.expert:
                return torch.from_numpy(state[:, :2]).float()  # the target is where it is
            if self.experts is None:
                self.experts = [make_expert(self.env, seed=i) for i in range(len(state))]
                for e in self.experts:
                    e.reset()
            actions = [e.act(s) for e, s in zip(self.experts, state, strict=True)]
            return torch.from_numpy(np.stack(actions)).float()

        def get_optim_params(self) -> dict:
            return {}

        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict | None]:
            raise NotImplementedError

        def predict_action_chunk(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
            raise NotImplementedError

    return ExpertPolicy


def test_lerobot_eval_loop_scores_success() -> None:
    """LeRobot's eval loop counts the expert's episodes as successes (pc_success 100, each
    sum_reward = the 4 goals reached), and a policy that holds still as failures (pc_success 0)."""
    cfg = make_env_config("vqbetlib_multireach")
    info = _lerobot_eval(cfg, _expert_policy(cfg)(expert=True), n_episodes=2)
    assert info["overall"]["pc_success"] == 100.0
    assert info["per_task"][0]["metrics"]["sum_rewards"] == [4.0, 4.0]
    cfg = make_env_config("vqbetlib_multireach", episode_length=15)
    info = _lerobot_eval(cfg, _expert_policy(cfg)(expert=False), n_episodes=2)
    assert info["overall"]["pc_success"] == 0.0
    assert info["per_task"][0]["metrics"]["successes"] == [False, False]


def _tiny_vqbet_checkpoint(cfg: Any, folder: Path) -> None:
    """LeRobot's VQ-BeT (one image + observation.state), tiny and untrained, saved as lerobot-train
    saves a checkpoint: config, weights, pre/post-processors with min-max stats."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.policies.vqbet.configuration_vqbet import VQBeTConfig

    policy_cfg = VQBeTConfig(
        device="cpu",
        push_to_hub=False,
        n_obs_steps=2,
        n_action_pred_token=2,
        action_chunk_size=2,
        crop_shape=None,
        pretrained_backbone_weights=None,
        spatial_softmax_num_keypoints=4,
        vqvae_n_embed=4,
        vqvae_embedding_dim=8,
        vqvae_enc_hidden_dim=8,
        gpt_block_size=16,
        gpt_input_dim=16,
        gpt_output_dim=16,
        gpt_n_layer=1,
        gpt_n_head=1,
        gpt_hidden_dim=16,
    )
    policy = make_policy(policy_cfg, env_cfg=cfg)
    bounds = {"min": torch.full((2,), -1.0), "max": torch.ones(2)}
    stats = {"observation.state": bounds, "action": bounds}
    preprocessor, postprocessor = make_pre_post_processors(policy_cfg, dataset_stats=stats)
    for part in (policy, preprocessor, postprocessor):
        part.save_pretrained(folder)


def test_lerobot_eval_cli_runs_vqbet_on_a_pixel_task(tmp_path: Path) -> None:
    """`lerobot-eval --env.type=vqbetlib_multireach --env.obs_type=pixels_agent_pos` with LeRobot's
    own VQ-BeT: exits 0 and writes eval_info.json with pc_success and the episodes' videos."""
    options = {"obs_type": "pixels_agent_pos", "observation_width": 64, "observation_height": 64}
    cfg = make_env_config("vqbetlib_multireach", **options)
    _tiny_vqbet_checkpoint(cfg, tmp_path / "policy")
    cli = Path(sys.executable).with_name("lerobot-eval")
    out = tmp_path / "eval"
    args = [f"--env.{k}={v}" for k, v in options.items()]
    command = [
        str(cli),
        "--env.type=vqbetlib_multireach",
        *args,
        "--env.episode_length=8",
        f"--policy.path={tmp_path / 'policy'}",
        "--policy.device=cpu",
        "--eval.n_episodes=2",
        "--eval.batch_size=2",
        f"--output_dir={out}",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    overall = info["overall"]
    assert overall["n_episodes"] == 2
    successes = info["per_task"][0]["metrics"]["successes"]
    assert overall["pc_success"] == 100.0 * np.mean(successes)
    assert len(list((out / "videos").rglob("*.mp4"))) == 2
