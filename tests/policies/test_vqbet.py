"""VQBeTPolicy: losses, multimodality, persistence, any number of RVQ layers, configs."""

import numpy as np
import pytest
import torch
from policy_helpers import TA, fitted_policy, make_policy, two_mode_data

from vqbet import ActionTokenizer
from vqbet.policies import VQBeTConfig, VQBeTPolicy
from vqbet.training import PolicyTrainConfig, compile_network


def test_loss_decreases_and_metrics(tmp_path):
    _, state = fitted_policy(tmp_path, steps=150)
    losses = [h["loss"] for h in state["history"] if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    last = [h for h in state["history"] if "code_accuracy/0" in h][-1]
    assert {"code_accuracy/0", "code_accuracy/1", "offset_loss", "samples_per_s"} <= set(last)


def test_policy_keeps_both_modes_where_regression_averages(tmp_path):
    policy, _ = fitted_policy(tmp_path)
    start = torch.zeros(400, 1, 2)  # the shared start state of both modes
    torch.manual_seed(1)
    chunks = policy.predict_action_chunk(start)
    vertical = chunks[:, 0, 1]
    up, down = (vertical > 0.5).float().mean().item(), (vertical < -0.5).float().mean().item()
    assert up > 0.25 and down > 0.25 and up + down > 0.95  # both modes, nothing in between

    # A unimodal MSE regressor on the same windows predicts the average: no mode at all.
    data = two_mode_data()
    obs = torch.from_numpy(data.obs)
    act = torch.from_numpy(data.action)
    torch.manual_seed(0)
    regressor = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(regressor.parameters(), lr=1e-2)
    for _ in range(300):
        loss = (regressor(obs) - act).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(regressor(torch.zeros(1, 2))[0, 1].item()) < 0.5


def test_save_load_gives_identical_actions(tmp_path):
    policy, _ = fitted_policy(tmp_path, steps=30)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VQBeTPolicy.from_pretrained(tmp_path / "ckpt")
    obs = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    torch.manual_seed(3)
    a = [policy.select_action(obs + i) for i in range(6)]
    torch.manual_seed(3)
    b = [loaded.select_action(obs + i) for i in range(6)]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="checkpoint has obs_dim=2, but obs_dim=6 is expected"):
        VQBeTPolicy.from_pretrained(tmp_path / "ckpt", obs_dim=6)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("sequential", [True, False])
def test_codes_for_any_number_of_layers(layers, sequential):
    policy = make_policy(layers, sequential_codes=sequential)
    batch = {"obs": torch.randn(4, 3, 2), "action": torch.randn(4, 3, TA, 2)}
    policy.tokenizer.normalizer.fit(batch["action"].reshape(-1, 2))
    loss, metrics = policy(batch)
    loss.backward()
    assert [k for k in metrics if k.startswith("code_accuracy")] == [
        f"code_accuracy/{i}" for i in range(layers)
    ]
    assert policy.eval().predict_action_chunk(torch.randn(4, 3, 2)).shape == (4, TA, 2)


@pytest.mark.parametrize("mode", ["prepend", "concat"])
def test_goal_conditioning(mode):
    policy = make_policy(goal_conditioning=mode, goal_dim=3).eval()
    goal = torch.randn(2, 3)
    assert policy.predict_action_chunk(torch.randn(2, 3, 2), goal).shape == (2, TA, 2)
    with pytest.raises(ValueError, match="goal"):
        policy.predict_action_chunk(torch.randn(2, 3, 2))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"obs_window": 0}, "obs_window"),
        ({"n_embd": 30, "n_head": 4}, "divisible"),
        ({"execution": "magic"}, "execution"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": [0.5, -0.1]}, "temperature"),
        ({"temperature": []}, "temperature"),
        ({"min_p": 1.0}, "min_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"goal_conditioning": "prepend"}, "goal_dim"),
        ({"action_chunk": TA + 1}, "action_chunk"),
    ],
)
def test_bad_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_policy(**overrides)


def test_mismatched_inputs_raise():
    policy = make_policy()
    with pytest.raises(ValueError, match=r"\(B, T <= 3, 2\)"):
        policy({"obs": torch.randn(4, 3, 5), "action": torch.randn(4, 3, TA, 2)})
    with pytest.raises(ValueError, match="action must have shape"):
        policy({"obs": torch.randn(4, 3, 2), "action": torch.randn(4, 3, TA, 3)})
    with pytest.raises(ValueError, match=r"select_action: obs must have shape \(B, 2\)"):
        policy.select_action(np.zeros(2))


@pytest.mark.slow
def test_compiled_policy_acts_like_the_eager_one_and_keeps_its_checkpoint_keys():
    torch.manual_seed(0)
    policy = make_policy(temperature=0.0).eval()
    keys = set(policy.state_dict())
    obs = torch.randn(4, 3, 2)
    eager = policy.predict_action_chunk(obs)
    compile_network(policy)
    torch.testing.assert_close(policy.predict_action_chunk(obs), eager, rtol=1e-4, atol=1e-5)
    assert set(policy.state_dict()) == keys


def test_relative_actions_are_the_absolute_policy_shifted_by_the_reference():
    torch.manual_seed(0)
    absolute = make_policy(temperature=0.0).eval()
    relative = make_policy(temperature=0.0, action_relative_to=[1, 0]).eval()
    relative.load_state_dict(absolute.state_dict())
    obs = torch.randn(4, 3, 2)
    action = torch.randn(4, 3, TA, 2)
    reference = obs[..., [1, 0]]  # action dim 0 is relative to obs dim 1, and 1 to 0
    loss_rel, _ = relative({"obs": obs, "action": action})
    loss_abs, _ = absolute({"obs": obs, "action": action - reference[:, :, None]})
    torch.testing.assert_close(loss_rel, loss_abs)
    torch.testing.assert_close(
        relative.predict_action_chunk(obs), absolute.predict_action_chunk(obs) + reference[:, -1, None]
    )
    with pytest.raises(ValueError, match="action_relative_to"):
        make_policy(action_relative_to=[0, 2])  # obs has 2 dims
    with pytest.raises(ValueError, match="action_relative_to"):
        make_policy(action_relative_to=[0])


def test_relative_mlp_round_trips_through_its_checkpoint(tmp_path):
    from vqbet.policies import MLPConfig, MLPPolicy, load_policy

    torch.manual_seed(0)
    policy = MLPPolicy(
        MLPConfig(obs_dim=3, action_dim=2, obs_window=2, action_chunk=TA, action_relative_to=[2, 0])
    )
    policy.eval()
    obs = torch.randn(5, 2, 3)
    shifted = obs.clone()
    loaded = load_policy(policy.save_pretrained(tmp_path / "mlp"))
    assert loaded.config.action_relative_to == [2, 0]
    torch.testing.assert_close(loaded.predict_action_chunk(obs), policy.predict_action_chunk(shifted))
    base = policy.action_normalizer.unnormalize(policy._normalised_chunk(obs))
    torch.testing.assert_close(policy.predict_action_chunk(obs), base + obs[:, -1, None][..., [2, 0]])


def test_the_tokenizer_records_the_frame_it_was_fitted_in(tmp_path):
    policy = make_policy(action_relative_to=[1, 0])
    assert policy.tokenizer.config.relative_to == [1, 0]  # an unfitted tokenizer takes the policy's frame
    policy.tokenizer.normalizer.fit(torch.randn(100, 2))
    policy.tokenizer.save_pretrained(tmp_path / "tok")
    tokenizer = ActionTokenizer.from_pretrained(tmp_path / "tok")
    assert tokenizer.config.relative_to == [1, 0]
    with pytest.raises(ValueError, match=r"fitted on chunks relative to observation indices \[1, 0\]"):
        VQBeTPolicy(VQBeTConfig(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA), tokenizer)


def test_chunks_are_normalised_once_and_made_raw_once():
    """Training targets and predictions live in the tokenizer's normalised space; the raw-unit
    encode/decode are the same maps seen from outside."""
    torch.manual_seed(0)
    policy = make_policy(temperature=0.0).eval()
    policy.tokenizer.normalizer.fit(torch.randn(500, 2) * 3 + 1)
    chunks = torch.randn(6, TA, 2) * 3 + 1
    normalised = policy.tokenizer.normalizer.normalize(chunks)
    codes = policy.tokenizer.encode_normalized(normalised)
    assert torch.equal(codes, policy.tokenizer.encode(chunks))
    torch.testing.assert_close(
        policy.tokenizer.normalizer.unnormalize(policy.tokenizer.decode_normalized(codes)),
        policy.tokenizer.decode(codes),
    )
    obs = torch.randn(4, 3, 2)
    h = policy.features(obs, last_only=True)[:, -1]
    codes = torch.zeros(4, 2, dtype=torch.long)
    for layer in range(2):  # argmax codes, each layer conditioned on the ones chosen before it
        codes[:, layer] = policy.heads(h, codes)[0][layer].argmax(-1)
    tokenizer = policy.tokenizer
    offsets = policy.heads(h, codes)[1].view(-1, TA, 2)
    expected = tokenizer.normalizer.unnormalize(tokenizer.decode_normalized(codes) + offsets)
    torch.testing.assert_close(policy.predict_action_chunk(obs), expected)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ActionTokenizer(action_dim=2, chunk_size=2, quantizer="vq"),
            "quantizer must be one of rvq|fsq",
        ),
        (
            lambda: ActionTokenizer(action_dim=2, chunk_size=2, gradient="straight"),
            "gradient must be one of ste|",
        ),
        (
            lambda: make_policy(goal_conditioning="append"),
            "goal_conditioning must be one of none|prepend|concat",
        ),
        (lambda: make_policy(obs_normalization="zscore"), "obs_normalization must be one of meanstd|minmax"),
        (lambda: PolicyTrainConfig(device="gpu"), "device must be auto, cpu, cuda or cuda:N"),
        (
            lambda: PolicyTrainConfig(steps=0, batch_size="x"),
            "steps must be an integer >= 1, got 0; batch_size must be an integer >= 1, got .x.",
        ),
        (lambda: VQBeTConfig.from_dict({"n_layers": 2}), r"unknown VQBeTConfig keys \['n_layers'\]"),
    ],
)
def test_string_options_and_ranges_are_checked_where_configs_are_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()
