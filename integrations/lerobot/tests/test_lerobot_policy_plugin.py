"""The vqbetlib LeRobot policy plug-in, inside LeRobot 0.6.1 (run with LeRobot's Python; `.ci/run`
does, after the main suite): batches equal vqbet's own windows, lerobot-train trains and saves a
checkpoint that vqbet loads and that acts the same in both, cameras and every family train,
errors name the flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

lerobot = pytest.importorskip("lerobot")
from lerobot.configs import FeatureType, PolicyFeature  # noqa: E402
from lerobot.datasets import LeRobotDataset  # noqa: E402
from lerobot.datasets.factory import resolve_delta_timestamps  # noqa: E402
from lerobot.policies.factory import get_policy_class, make_policy, make_pre_post_processors  # noqa: E402
from lerobot.utils.import_utils import register_third_party_plugins  # noqa: E402
from lerobot_policy_vqbetlib.batches import camera_name, lerobot_to_vqbet  # noqa: E402
from lerobot_policy_vqbetlib.configuration_vqbetlib import VQBetLibConfig  # noqa: E402
from lerobot_policy_vqbetlib.modeling_vqbetlib import VQBetLibPolicy  # noqa: E402

from vqbet.data import TrajectoryWindows, export_lerobot  # noqa: E402
from vqbet.data.formats.lerobot import read_lerobot  # noqa: E402
from vqbet.policies import load_policy  # noqa: E402

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32}
FIT = {"steps": 30, "batch_size": 64}
BIN = Path(sys.executable).parent


def config(**fields) -> VQBetLibConfig:
    fields = {"policy_options": dict(TINY), "tokenizer_fit": dict(FIT), **fields}
    return VQBetLibConfig(device="cpu", push_to_hub=False, **fields)


def built(folder: Path, **fields) -> tuple[VQBetLibPolicy, LeRobotDataset]:
    """The policy as lerobot-train builds it (phase 1 included) and the dataset it reads."""
    cfg = config(**fields)
    meta = LeRobotDataset(repo_id="local/test", root=folder).meta
    dataset = LeRobotDataset(
        repo_id="local/test", root=folder, delta_timestamps=resolve_delta_timestamps(cfg, meta)
    )
    return make_policy(cfg, ds_meta=dataset.meta), dataset


def test_plugin_is_discovered_by_name():
    register_third_party_plugins()
    assert get_policy_class("vqbetlib") is VQBetLibPolicy


@pytest.mark.parametrize("kind", ["state", "cameras", "split"])
def test_batches_equal_vqbets_own_windows(datasets, kind):
    """LeRobot's frames at the config's delta indices, rearranged, are exactly vqbet's windows:
    clamped chunk starts at episode starts, masks past episode ends, decoded camera frames."""
    cfg = config(n_obs_steps=3, action_chunk=4)
    folder = datasets[kind]
    meta = LeRobotDataset(repo_id="local/test", root=folder).meta
    dataset = LeRobotDataset("local/test", root=folder, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    cameras = {key: camera_name(key) for key, ft in meta.features.items() if ft["dtype"] == "video"}
    ours = read_lerobot(folder, image_keys={name: key for key, name in cameras.items()})
    windows = TrajectoryWindows(ours, 3, 4, cameras=list(cameras.values()))
    ends = ours.episode_ends
    picks = [0, 1, 2, int(ends[0]) - 1, int(ends[0]), int(ends[0]) + 1, int(ends[2]) - 2, len(windows) - 1]
    batch = torch.utils.data.default_collate([dataset[i] for i in picks])
    got = lerobot_to_vqbet(batch, 3, 4, cameras)
    want = torch.utils.data.default_collate([windows[i] for i in picks])
    state = got["obs"]["state"] if cameras else got["obs"]
    want_state = want["obs"]["state"] if cameras else want["obs"]
    torch.testing.assert_close(state, want_state)
    torch.testing.assert_close(got["action"], want["action"])
    assert torch.equal(got["action_mask"], want["action_mask"])
    assert not bool(got["action_mask"][-1].all()), "the last window's chunk runs past its episode"
    for name in cameras.values():
        assert got["obs"][name].dtype == torch.uint8
        assert torch.equal(got["obs"][name], want["obs"][name]), name


def test_phase_one_runs_when_lerobot_builds_the_policy(datasets):
    policy, _ = built(datasets["state"], tokenizer="fsq")
    inner = policy.policy
    assert bool(inner.tokenizer_frozen) and not any(p.requires_grad for p in inner.tokenizer.parameters())
    data = read_lerobot(datasets["state"])
    mean = inner.obs_normalizer.state_dict()
    assert any(torch.allclose(v.float(), torch.from_numpy(data.obs.mean(0))) for v in mean.values())
    params = {id(p) for group in policy.get_optim_params() for p in group["params"]}
    assert params and not params & {id(p) for p in inner.tokenizer.parameters()}


@pytest.mark.parametrize(
    ("family", "tokenizer"), [("vqbet", "rvq"), ("vqbet", "bins"), ("ar", "fast"), ("mlp", "rvq")]
)
def test_cameras_and_families_train(datasets, family, tokenizer):
    """One optimiser step on a LeRobot batch with two cameras moves the loss's parameters."""
    options = {"hidden": 32, "depth": 2} if family == "mlp" else dict(TINY)
    policy, dataset = built(datasets["cameras"], family=family, tokenizer=tokenizer, policy_options=options)
    assert policy.policy.config.vision.cameras == ["top", "wrist"]
    pre, _ = make_pre_post_processors(policy.config, dataset_stats=dataset.meta.stats)
    batch = pre(next(iter(torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True))))
    policy.train()
    loss, metrics = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics
    encoder = policy.policy.image_encoders
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_lerobot_train_checkpoint_loads_in_vqbet_and_acts_the_same(datasets, tmp_path):
    out = tmp_path / "train"
    command = [
        str(BIN / "lerobot-train"),
        "--policy.type=vqbetlib",
        "--dataset.repo_id=local/test",
        f"--dataset.root={datasets['state']}",
        "--steps=20",
        "--batch_size=16",
        "--num_workers=0",
        "--save_freq=20",
        "--log_freq=10",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
        f"--output_dir={out}",
        "--policy.n_obs_steps=3",
        "--policy.action_chunk=4",
        "--policy.execute_steps=2",
        f"--policy.policy_options={json.dumps(TINY)}",
        f"--policy.tokenizer_fit={json.dumps(FIT)}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = out / "checkpoints" / "last" / "pretrained_model"
    theirs = VQBetLibPolicy.from_pretrained(folder)
    ours = load_policy(folder)
    assert (ours.config.obs_window, ours.config.action_chunk, ours.config.execute_steps) == (3, 4, 2)
    rng = np.random.default_rng(1)
    theirs.reset()
    ours.reset()
    for _ in range(6):  # several steps: windows fill, chunks replan every 2 steps
        state = torch.from_numpy(rng.normal(size=(2, 4)).astype(np.float32))
        torch.manual_seed(0)
        a = theirs.select_action({"observation.state": state})
        torch.manual_seed(0)
        b = ours.select_action(state)
        torch.testing.assert_close(a, b)
    processors = json.loads((folder / "policy_preprocessor.json").read_text())
    assert "normalizer_processor" in json.dumps(processors)
    assert json.loads((folder / "config.json").read_text())["type"] == "vqbetlib"


def test_a_vqbet_checkpoint_becomes_a_lerobot_one(datasets, tmp_path):
    policy, _ = built(datasets["state"])
    policy.policy.save_pretrained(tmp_path / "vqbet")
    cfg = policy.config
    wrapped = VQBetLibPolicy.from_vqbet(tmp_path / "vqbet", cfg)
    wrapped.save_pretrained(tmp_path / "lerobot")
    again = VQBetLibPolicy.from_pretrained(tmp_path / "lerobot")
    for key, value in policy.policy.state_dict().items():
        assert torch.equal(again.policy.state_dict()[key], value), key
    wrong = config(n_obs_steps=2)
    wrong.input_features, wrong.output_features = cfg.input_features, cfg.output_features
    with pytest.raises(ValueError, match="obs_window=5, the LeRobot config and features give 2"):
        VQBetLibPolicy.from_vqbet(tmp_path / "vqbet", wrong)


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match=r"--policy\.family must be one of"):
        VQBetLibConfig(family="diffusion")
    with pytest.raises(ValueError, match=r"--policy\.tokenizer must be one of"):
        VQBetLibConfig(tokenizer="vq")
    with pytest.raises(ValueError, match=r"policy_options\.obs_dim"):
        VQBetLibConfig(policy_options={"obs_dim": 3})
    cfg = VQBetLibConfig()
    cfg.input_features = {"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (2,))}
    with pytest.raises(ValueError, match=r"needs 'observation\.state'"):
        VQBetLibPolicy(cfg)
    cfg.input_features["observation.state"] = PolicyFeature(FeatureType.STATE, (4,))
    cfg.input_features["observation.images.top"] = PolicyFeature(FeatureType.VISUAL, (1, 32, 32))
    with pytest.raises(ValueError, match=r"observation.images.top: vqbetlib takes RGB frames"):
        VQBetLibPolicy(cfg)
    cfg = config(family="vqbet", tokenizer="fast")
    cfg.input_features = {"observation.state": PolicyFeature(FeatureType.STATE, (4,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (2,))}
    with pytest.raises(ValueError, match="use policy=ar"):
        VQBetLibPolicy(cfg)


def test_lerobot_train_then_lerobot_eval_through_both_plugins(tmp_path):
    """Our MultiReach expert's demonstrations, exported; lerobot-train --policy.type=vqbetlib;
    lerobot-eval of that checkpoint on --env.type=vqbetlib_multireach: the success it reports is
    the episodes' own."""
    from vqbet.data import load_dataset
    from vqbet.pipeline import collect

    demos = collect("vqbet/MultiReach-v0", 4, tmp_path / "mr.hdf5", workers=1, progress=False)
    export = export_lerobot(load_dataset(demos), tmp_path / "mr", fps=20, task="reach the goals")
    out = tmp_path / "train"
    train = [
        str(BIN / "lerobot-train"),
        "--policy.type=vqbetlib",
        "--dataset.repo_id=local/mr",
        f"--dataset.root={export}",
        "--steps=10",
        "--batch_size=16",
        "--num_workers=0",
        "--save_freq=10",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
        f"--output_dir={out}",
        f"--policy.policy_options={json.dumps(TINY)}",
        f"--policy.tokenizer_fit={json.dumps(FIT)}",
    ]
    done = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluate = [
        str(BIN / "lerobot-eval"),
        "--env.type=vqbetlib_multireach",
        "--env.episode_length=30",
        f"--policy.path={out / 'checkpoints' / 'last' / 'pretrained_model'}",
        "--policy.device=cpu",
        "--eval.n_episodes=2",
        "--eval.batch_size=2",
        f"--output_dir={tmp_path / 'eval'}",
    ]
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2
    successes = info["per_task"][0]["metrics"]["successes"]
    assert info["overall"]["pc_success"] == pytest.approx(100 * sum(successes) / 2)
