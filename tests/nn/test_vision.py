"""Policies from pixels: crops, dict observations through windows, training and acting, two
cameras, checkpoints, and the errors that name a camera or image size that does not fit."""

import numpy as np
import pytest
import torch
from policy_helpers import TA, make_policy, two_mode_data

from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.nn.vision import ImageEncoders, VisionConfig, crop
from vqbet.policies import MLPConfig, MLPPolicy, VQBeTConfig, VQBeTPolicy, load_policy

CAMERAS = ["top", "side"]
VISION = dict(cameras=CAMERAS, image_size=[16, 16], crop=[12, 12], features=8)


def pixel_data(episodes: int = 12, length: int = 8) -> EpisodeData:
    """The two-mode data plus two cameras whose frames show the state (a bright pixel moves)."""
    data = two_mode_data(episodes, length)
    images = {}
    for k, camera in enumerate(CAMERAS):
        frames = np.zeros((data.num_steps, 16, 16, 3), dtype=np.uint8)
        rows = np.clip(((data.obs[:, 1] + 1) * 8).astype(int), 0, 15)
        frames[np.arange(data.num_steps), rows, 4 + 4 * k] = 255
        images[camera] = frames
    return EpisodeData(data.obs, data.action, data.episode_ends, images=images)


def vqbet_policy(**vision) -> VQBeTPolicy:
    torch.manual_seed(0)
    return make_policy(n_embd=16, head_hidden=16, code_embd=4, temperature=0.0, vision={**VISION, **vision})


def test_random_crops_in_training_and_the_centre_crop_when_acting():
    images = torch.arange(4 * 10 * 10 * 3).reshape(4, 10, 10, 3)
    torch.manual_seed(0)
    random = crop(images, (6, 6), random=True)
    assert random.shape == (4, 6, 6, 3)
    for i in range(4):  # every crop is a window of its own image
        found = [
            (r, c)
            for r in range(5)
            for c in range(5)
            if torch.equal(images[i, r : r + 6, c : c + 6], random[i])
        ]
        assert len(found) == 1
    offsets = {tuple(torch.nonzero(images[i] == random[i, 0, 0, 0])[0][:2].tolist()) for i in range(4)}
    assert len(offsets) > 1  # independent per image
    assert torch.equal(crop(images, (6, 6), random=False), images[:, 2:8, 2:8])

    encoders = ImageEncoders(VisionConfig(cameras=["top"], image_size=[40, 40], crop=[32, 32]))
    frames = {"top": torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8)}
    encoders.eval()
    assert torch.equal(encoders(frames), encoders(frames))  # centre crop: deterministic
    encoders.train()
    torch.manual_seed(1)
    assert not torch.equal(encoders(frames), encoders(frames))  # random crops differ


def test_pixels_are_cropped_and_normalised_channels_first():
    encoders = ImageEncoders(VisionConfig(cameras=["top"], image_size=[10, 10], crop=[6, 6])).eval()
    frames = torch.randint(0, 256, (3, 10, 10, 3), dtype=torch.uint8)
    x = encoders.pixels(frames)
    assert x.shape == (3, 3, 6, 6) and x.dtype == torch.float32
    expected = (frames[:, 2:8, 2:8].permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    torch.testing.assert_close(x, expected)
    white = encoders.pixels(torch.full((1, 10, 10, 3), 255, dtype=torch.uint8))
    torch.testing.assert_close(white, torch.ones_like(white))
    pooled = ImageEncoders(VisionConfig(cameras=["top"], image_size=[10, 10], crop=[8, 8], downsample=2))
    x = pooled.eval().pixels(frames)  # each pixel the mean of a 2 x 2 block of the centre crop
    assert x.shape == (3, 3, 4, 4)
    centre = (frames[:, 1:9, 1:9].permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    torch.testing.assert_close(x, centre.view(3, 3, 4, 2, 4, 2).mean((3, 5)))
    assert pooled({"top": frames}).shape == (3, 64)
    with pytest.raises(ValueError, match=r"vision.crop \[6, 6\] must divide by vision.downsample \(4\)"):
        VisionConfig(cameras=["top"], image_size=[10, 10], crop=[6, 6], downsample=4)
    with pytest.raises(ValueError, match=r"vision.downsample must be an integer >= 1, got 0"):
        VisionConfig(cameras=["top"], image_size=[10, 10], crop=[6, 6], downsample=0)


@pytest.mark.parametrize("family", ["vqbet", "mlp"])
def test_two_cameras_train_end_to_end_and_act_the_same_after_save_load(family, tmp_path):
    data = pixel_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=TA, cameras=CAMERAS)
    if family == "vqbet":
        policy = vqbet_policy()
        policy.fit_statistics(windows, progress=False, tokenizer_fit=None)
    else:
        torch.manual_seed(0)
        config = MLPConfig(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, hidden=16, vision=VISION)
        policy = MLPPolicy(config)
        policy.fit_statistics(windows)
    policy.freeze_statistics()
    policy.train()
    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=8, shuffle=True)))
    loss, _ = policy(batch)
    loss.backward()
    for camera in CAMERAS:  # one encoder per camera, both learn from the loss
        grads = [p.grad for p in policy.image_encoders.encoders[camera].parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)

    policy.eval()
    loaded = load_policy(policy.save_pretrained(tmp_path / "p"))
    assert loaded.config.vision.cameras == CAMERAS
    rng = np.random.default_rng(0)
    for _ in range(4):  # same pixels -> same actions, step after step
        obs = {
            "state": rng.normal(size=(3, 2)).astype(np.float32),
            **{c: rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8) for c in CAMERAS},
        }
        assert torch.equal(policy.select_action(obs), loaded.select_action(obs))
    assert policy._history["top"].shape == (3, 3, 16, 16, 3) and policy._history["top"].dtype == torch.uint8


def test_cameras_or_image_sizes_that_differ_are_named():
    policy = vqbet_policy().eval()
    state = np.zeros((1, 2), np.float32)
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(
        ValueError, match=r"camera\(s\) \['side'\] missing: the policy sees \['side', 'top'\]"
    ):
        policy.select_action({"state": state, "top": frame})
    with pytest.raises(
        ValueError, match=r"camera 'top' must be uint8 frames of shape \(1, 16, 16, 3\), got \(1, 8, 8, 3\)"
    ):
        policy.reset()
        policy.select_action({"state": state, "top": np.zeros((1, 8, 8, 3), np.uint8), "side": frame})
    with pytest.raises(ValueError, match=r"camera\(s\) \['side', 'top'\] missing"):
        policy.predict_action_chunk(np.zeros((1, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"vision.crop \[20, 20\] is larger than vision.image_size"):
        vqbet_policy(crop=[20, 20])
    with pytest.raises(ValueError, match=r"unknown VisionConfig keys \['camera'\]"):
        VQBeTConfig(vision={"camera": ["top"]})


def test_an_env_observes_two_cameras_and_the_expert_records_them():
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.rollout import expert_episode

    env = gym.make("vqbet/PushT-v0", obs_mode="pixels+agent", cameras=["top", "side"])
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "top", "side"} and obs["top"].shape == (96, 96, 3)
    assert np.array_equal(obs["state"], env.unwrapped.agent_pos)
    assert np.abs(obs["top"].astype(int) - obs["side"]).mean() > 10  # two different views
    episode = expert_episode(env, seed=0)
    n = episode["length"]
    assert episode["obs"].shape == (n, 2) and sorted(episode["images"]) == ["side", "top"]
    assert episode["images"]["top"].shape == (n, 96, 96, 3) and episode["images"]["top"].dtype == np.uint8
    # the frames move with the task: the first and last differ where the T was pushed
    assert np.abs(episode["images"]["top"][0].astype(int) - episode["images"]["top"][-1]).mean() > 1
    state = gym.make("vqbet/PushT-v0")
    from_state = expert_episode(state, seed=0)
    assert np.array_equal(from_state["action"], episode["action"])  # same expert
    # the full state the expert acted on is kept as env_state: what the state env observed
    assert episode["env_state"].shape == (n, 6) and from_state["env_state"] is None
    np.testing.assert_array_equal(episode["env_state"], from_state["obs"])
    with pytest.raises(ValueError, match="obs_mode must be one of"):
        gym.make("vqbet/PushT-v0", obs_mode="rgb")
    with pytest.raises(ValueError, match=r"cameras must be distinct names out of \['side', 'top'\]"):
        gym.make("vqbet/PushT-v0", obs_mode="pixels", cameras=["front"])


def test_pixel_pusht_smoke_run_trains_and_evaluates_from_pixels(tmp_path):
    """`scripts/train.py task=pusht_pixels` end to end (collect with the camera, train the encoder
    with the policy, evaluate on the pixel env), at smoke size; and a policy whose camera the env
    does not render is refused before any episode."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from vqbet.data import read_hdf5
    from vqbet.pipeline.eval import check_env_fits
    from vqbet.pipeline.task import env_factory

    root = Path(__file__).resolve().parents[2]
    run, data = tmp_path / "run", tmp_path / "data.hdf5"
    command = [sys.executable, "scripts/train.py", "experiment=smoke", "task=pusht_pixels"]
    command += [f"run_dir={run}", f"task.dataset={data}", "eval.during_training=0"]
    env = dict(os.environ, TQDM_DISABLE="1", MUJOCO_GL="egl")
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    stored = read_hdf5(data)
    assert list(stored.images) == ["top"] and stored.images["top"].shape[1:] == (96, 96, 3)
    assert stored.obs.shape[1] == 2 and stored.attrs["env_kwargs"]["obs_mode"] == "pixels+agent"
    assert stored.env_state.shape == (stored.num_steps, 6)
    meta = json.loads((run / "checkpoints" / "best" / "config.json").read_text())
    assert meta["policy"]["vision"]["cameras"] == ["top"]
    assert meta["policy"]["vision"]["env_state_weight"] == 1.0  # the task's recipe travels
    results = json.loads((run / "results.json").read_text())
    assert len(results["episodes"]) == 4 and (run / "rollouts.mp4").is_file()

    policy = load_policy(run / "checkpoints" / "best")
    with pytest.raises(ValueError, match=r"the policy sees cameras \['top'\], the env gives \['side'\]"):
        check_env_fits(
            policy, env_factory("vqbet/PushT-v0", obs_mode="pixels+agent", cameras=["side"]), "PushT"
        )
    with pytest.raises(ValueError, match=r"camera 'top' renders \(64, 64, 3\), the policy was trained on"):
        check_env_fits(
            policy, env_factory("vqbet/PushT-v0", obs_mode="pixels+agent", width=64, height=64), "PushT"
        )


def test_a_policy_with_cameras_exports_and_acts_like_the_eager_one(tmp_path):
    from vqbet.policies.export import ExportedPolicy

    policy = vqbet_policy()
    windows = TrajectoryWindows(pixel_data(), obs_window=3, action_chunk=TA, cameras=CAMERAS)
    policy.fit_statistics(windows, progress=False)
    policy.freeze_statistics()
    policy.eval()
    acting = ExportedPolicy.load(policy.export(tmp_path / "deploy", max_batch=16))
    rng = np.random.default_rng(1)
    for batch in (1, 4):
        obs = {
            "state": rng.normal(size=(batch, 3, 2)).astype(np.float32),
            **{c: rng.integers(0, 256, (batch, 3, 16, 16, 3), dtype=np.uint8) for c in CAMERAS},
        }
        assert torch.equal(acting.predict_action_chunk(obs), policy.predict_action_chunk(obs))
    with pytest.raises(
        ValueError, match=r"config.json: camera\(s\) \['side'\] missing: the policy sees \['side', 'top'\]"
    ):
        acting.predict_action_chunk({"state": obs["state"], "top": obs["top"]})


def test_the_resnet18_encoder_uses_groupnorm_or_names_its_extra(tmp_path):
    config = VisionConfig(cameras=["top"], image_size=[32, 32], crop=[32, 32], encoder="resnet18", features=8)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'pip install "vqbet\[vision\]"'):
            ImageEncoders(config)
        return
    encoders = ImageEncoders(config)
    modules = list(encoders.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in modules)
    out = encoders({"top": torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)})
    assert out.shape == (2, 3, 8)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        ImageEncoders(VisionConfig(**{**config.__dict__, "weights": str(tmp_path / "none.pt")}))


def env_state_data() -> EpisodeData:
    """pixel_data plus an env_state: the state and a function of it the frames show."""
    data = pixel_data()
    env_state = np.concatenate([data.obs, np.sin(3 * data.obs)], axis=1).astype(np.float32)
    return EpisodeData(data.obs, data.action, data.episode_ends, images=data.images, env_state=env_state)


def test_the_env_state_head_adds_its_weighted_loss_and_trains_the_encoders(tmp_path):
    data = env_state_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=TA, cameras=CAMERAS)
    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=16)))
    assert batch["env_state"].shape == (16, 3, 4)
    window = windows[5]
    obs_steps = windows.indices(5)[0]
    assert torch.equal(window["env_state"], torch.from_numpy(data.env_state[obs_steps]))

    policies = {}
    for weight in (0.0, 2.0):
        policies[weight] = vqbet_policy(env_state_weight=weight, env_state_dim=4)
        policies[weight].fit_statistics(windows, progress=False)
        policies[weight].freeze_statistics()
        policies[weight].train()
    policy = policies[2.0]
    policies[0.0].load_state_dict(policy.state_dict(), strict=False)  # the same weights but the head
    losses = {}
    for weight, each in policies.items():
        torch.manual_seed(1)  # the same crops and dropout for both
        losses[weight] = each(batch)
    (plain, _), (with_head, metrics) = losses[0.0], losses[2.0]
    torch.testing.assert_close(with_head, plain + 2.0 * metrics["env_state_loss"], rtol=1e-5, atol=1e-5)
    assert metrics["loss"] == pytest.approx(with_head.item())
    assert bool(policy.env_state_normalizer.fitted) and policy.env_state_normalizer.shift.shape == (4,)

    # the head's loss alone trains the image encoders (and falls)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        _, metrics = policy(batch)
        env_state_loss = policy.with_env_state_loss(torch.zeros(()), policy.observe(batch["obs"]), batch, {})
        optimizer.zero_grad()
        env_state_loss.backward()
        first = first if first is not None else env_state_loss.item()
        optimizer.step()
    grads = [p.grad for p in policy.image_encoders.encoders["top"].parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert env_state_loss.item() < 0.5 * first

    loaded = load_policy(policy.save_pretrained(tmp_path / "p"))  # the head and its statistics load
    torch.testing.assert_close(loaded.env_state_head.weight, policy.env_state_head.weight)
    torch.testing.assert_close(loaded.env_state_normalizer.scale, policy.env_state_normalizer.scale)


def test_the_env_state_head_names_what_is_missing():
    policy = vqbet_policy(env_state_weight=1.0, env_state_dim=4)
    no_state = TrajectoryWindows(pixel_data(), obs_window=3, action_chunk=TA, cameras=CAMERAS)
    with pytest.raises(
        ValueError,
        match=r"env_state_weight > 0 needs the dataset's env_state \(4 values per step\), found none",
    ):
        policy.fit_statistics(no_state, progress=False)
    other = vqbet_policy(env_state_weight=1.0, env_state_dim=3)
    windows = TrajectoryWindows(env_state_data(), obs_window=3, action_chunk=TA, cameras=CAMERAS)
    with pytest.raises(ValueError, match=r"\(3 values per step\), found 4 values per step"):
        other.fit_statistics(windows, progress=False)
    policy.fit_statistics(windows, progress=False)
    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=4)))
    del batch["env_state"]
    with pytest.raises(ValueError, match="the batch needs 'env_state'"):
        policy(batch)
    with pytest.raises(
        ValueError, match=r"env_state_weight must be >= 0, and > 0 needs env_state_dim >= 1, got 1.0 and 0"
    ):
        VisionConfig(cameras=["top"], env_state_weight=1.0)
    with pytest.raises(ValueError, match=r"predicts env_state from cameras: name vision\.cameras"):
        VisionConfig(env_state_weight=1.0, env_state_dim=4)


def test_the_main_job_refuses_an_env_state_weight_without_env_state_before_the_run_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from vqbet.data import write_hdf5

    rng = np.random.default_rng(0)
    n = 40
    frames = {"top": rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)}
    obs, action = rng.normal(size=(n, 2)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)
    dataset = write_hdf5(tmp_path / "old.hdf5", EpisodeData(obs, action, [20, 40], images=frames))
    root = Path(__file__).resolve().parents[2]
    run = tmp_path / "run"
    command = [sys.executable, "scripts/train.py", "experiment=smoke", "task=pusht_pixels"]
    command += [f"run_dir={run}", f"task.dataset={dataset}", "task.vision.env_state_weight=1.0"]
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert (
        "old.hdf5: vision.env_state_weight > 0 needs the dataset's env_state (6 values per step)"
        in out.stderr
    )
    assert not run.exists()
