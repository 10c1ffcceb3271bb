"""VQBeTPolicy: losses, multimodality, acting modes, persistence, any number of RVQ layers."""

import copy

import numpy as np
import pytest
import torch

from vqbet import ActionTokenizer, TokenizerFitConfig, fit_tokenizer
from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.policies import VQBeTConfig, VQBeTPolicy
from vqbet.policies.vqbet import sample_codes
from vqbet.train_policy import PolicyTrainConfig, compile_network, train_policy

TA = 4


def two_mode_data(episodes: int = 60, length: int = 12, seed: int = 0) -> EpisodeData:
    """From the same start (0, 0) half the episodes move up, half down: a 2-mode dataset."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(episodes):
        direction = 1.0 if i % 2 == 0 else -1.0
        velocity = np.array([0.3, direction], dtype=np.float32) + rng.normal(0, 0.02, 2).astype(np.float32)
        pos = np.cumsum(np.repeat(velocity[None] * 0.1, length, 0), axis=0) - velocity * 0.1
        eps.append({"obs": pos.astype(np.float32), "action": np.repeat(velocity[None], length, 0)})
    return EpisodeData.from_episodes(eps)


def make_policy(layers: int = 2, **overrides) -> VQBeTPolicy:
    tok = ActionTokenizer(
        action_dim=2, chunk_size=TA, num_layers=layers, codebook_size=8, latent_dim=16, hidden_dim=32
    )
    fields = dict(
        obs_dim=2,
        action_dim=2,
        obs_window=3,
        action_chunk=TA,
        n_layer=1,
        n_head=2,
        n_embd=32,
        head_hidden=64,
        code_embd=8,
        dropout=0.0,
    )
    fields.update(overrides)
    return VQBeTPolicy(VQBeTConfig(**fields), tok)


def fitted_policy(tmp_path, layers=2, steps=300, **overrides):
    torch.manual_seed(0)
    data = two_mode_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=TA)
    policy = make_policy(layers, **overrides)
    fit_tokenizer(policy.tokenizer, windows.action_chunks(), TokenizerFitConfig(steps=200), progress=False)
    policy.obs_normalizer.fit(torch.from_numpy(data.obs))
    cfg = PolicyTrainConfig(
        steps=steps,
        batch_size=64,
        lr=3e-3,
        warmup_steps=10,
        eval_every=steps,
        checkpoint_every=steps,
        log_every=10,
        device="cpu",
    )
    state = train_policy(policy, windows, None, cfg, tmp_path / "run", progress=False)
    return policy.eval(), state


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


def test_queue_calls_model_every_ta_steps_and_ensemble_every_step(monkeypatch):
    policy = make_policy().eval()
    calls = []
    original = policy.predict_action_chunk

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(policy, "predict_action_chunk", spy)
    obs = np.zeros((3, 2), np.float32)
    for _ in range(2 * TA):
        assert policy.select_action(obs).shape == (3, 2)
    assert len(calls) == 2
    policy.config.execution = "ensemble"
    policy.reset()
    calls.clear()
    for _ in range(5):
        policy.select_action(obs)
    assert len(calls) == 5


def test_receding_horizon_plays_the_first_steps_of_each_chunk_then_predicts_again(monkeypatch):
    policy = make_policy(execute_steps=2).eval()
    chunks = []

    def fake(obs_window, goal=None):
        chunks.append(torch.randn(obs_window.shape[0], TA, 2))
        return chunks[-1]

    monkeypatch.setattr(policy, "predict_action_chunk", fake)
    obs = np.zeros((3, 2), np.float32)
    played = [policy.select_action(obs) for _ in range(6)]
    assert len(chunks) == 3  # a new chunk every 2 steps, not every TA
    for t, action in enumerate(played):
        torch.testing.assert_close(action, chunks[t // 2][:, t % 2])
    with pytest.raises(ValueError, match=r"execute_steps must be an integer in \[0, action_chunk=4\], got 5"):
        make_policy(execute_steps=TA + 1)
    with pytest.raises(ValueError, match="execute_steps must be an integer"):
        make_policy(execute_steps=2.5)


def test_acting_features_equal_the_last_step_of_the_full_pass():
    torch.manual_seed(0)
    policy = make_policy(n_layer=3).eval()
    obs = torch.randn(4, 3, 2)
    full = policy.features(obs)[:, -1]
    last = policy.features(obs, last_only=True)
    assert last.shape == (4, 1, 32)
    torch.testing.assert_close(last[:, 0], full, rtol=1e-5, atol=1e-6)


def test_staggered_queues_predict_only_for_envs_that_need_it_and_match_single_env_acting(monkeypatch):
    torch.manual_seed(0)
    policy = make_policy(temperature=0.0).eval()
    rng = np.random.default_rng(0)
    obs_seq = rng.normal(size=(3 * TA, 3, 2)).astype(np.float32)
    batch_sizes = []
    original = policy.predict_action_chunk

    def spy(obs_window, goal=None):
        batch_sizes.append(obs_window.shape[0])
        return original(obs_window, goal)

    monkeypatch.setattr(policy, "predict_action_chunk", spy)
    batched = []
    for t, obs in enumerate(obs_seq):
        if t == 2:  # env 1's episode ends after two steps: its queue restarts out of step
            policy.reset(np.array([False, True, False]))
        batched.append(policy.select_action(obs))
    assert batch_sizes[:2] == [3, 1] and max(batch_sizes[2:]) <= 2
    for env in range(3):
        policy.reset()
        for t, obs in enumerate(obs_seq):
            if t == 2 and env == 1:
                policy.reset()
            torch.testing.assert_close(policy.select_action(obs[env : env + 1])[0], batched[t][env])


def test_sampled_codes_follow_the_tempered_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, -30.0], [0.0, 0.0, 0.0, 0.0]])
    draws = sample_codes(logits.repeat_interleave(20000, 0), temperature=0.5).view(2, 20000)
    for row in range(2):
        freq = torch.bincount(draws[row], minlength=4).double() / 20000
        expected = torch.softmax(logits[row].double() / 0.5, dim=-1)
        torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
    assert draws[0].ne(3).all()  # a code of ~zero probability is never drawn
    assert sample_codes(logits, temperature=0.0).tolist() == [0, 0]


def test_min_p_drops_unlikely_codes_and_keeps_the_odds_of_the_rest():
    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25], [0.04, 0.9, 0.03, 0.03]])
    n = 20000
    draws = sample_codes(probs.log().repeat_interleave(n, 0), temperature=1.0, min_p=0.25).view(3, n)
    expected = torch.tensor([[0.5, 0.3, 0.15, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0]])
    expected = expected / expected.sum(-1, keepdim=True)  # the kept codes at their learnt odds
    for row in range(3):
        freq = torch.bincount(draws[row], minlength=4).double() / n
        torch.testing.assert_close(freq, expected[row].double(), atol=0.01, rtol=0)
    assert draws[0].ne(3).all() and draws[2].eq(1).all()
    # After the temperature: at 0.5 code 2 (0.15 -> 0.075 of the largest after squaring) goes too.
    tempered = sample_codes(probs[:1].log().repeat_interleave(n, 0), temperature=0.5, min_p=0.25)
    assert set(tempered.tolist()) == {0, 1}


def test_a_policy_with_min_p_near_one_acts_greedily():
    policy = make_policy(layers=2, temperature=1.0, min_p=0.999).eval()
    policy.tokenizer.normalizer.fit(torch.randn(64, 2))
    obs = torch.randn(64, 3, 2)
    torch.manual_seed(1)
    near_one = policy.predict_action_chunk(obs)
    policy.config.min_p = 0.0
    sampled = policy.predict_action_chunk(obs)
    policy.config.temperature = 0.0
    greedy = policy.predict_action_chunk(obs)
    torch.testing.assert_close(near_one, greedy)  # only the likeliest code of each layer is left
    assert not torch.allclose(sampled, greedy)  # while at temperature 1 without it, codes vary


def test_a_temperature_per_rvq_layer_samples_each_layer_at_its_own(monkeypatch):
    policy = make_policy(layers=2).eval()
    policy.tokenizer.normalizer.fit(torch.randn(64, 2))
    seen = []
    decode = policy.tokenizer.decode_normalized
    record = lambda codes: seen.append(codes) or decode(codes)  # noqa: E731
    monkeypatch.setattr(policy.tokenizer, "decode_normalized", record)
    obs = torch.randn(64, 3, 2)

    def codes_over_draws(temperature) -> torch.Tensor:  # (draws, N, L)
        policy.config.temperature = temperature
        seen.clear()
        for seed in range(4):
            torch.manual_seed(seed)
            policy.predict_action_chunk(obs)
        return torch.stack(seen)

    first_greedy = codes_over_draws([0.0, 50.0])
    assert (first_greedy[:, :, 0] == first_greedy[0, :, 0]).all()  # layer 0 argmax at every draw
    assert (first_greedy[:, :, 1] != first_greedy[0, :, 1]).any()  # layer 1 sampled
    second_greedy = codes_over_draws([50.0, 0.0])
    assert (second_greedy[:, :, 0] != second_greedy[0, :, 0]).any()
    assert torch.equal(codes_over_draws([0.0, 0.0]), codes_over_draws(0.0))
    assert torch.equal(codes_over_draws([0.0, 50.0])[:, :, 0], codes_over_draws(0.0)[:, :, 0])
    policy.config.temperature = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="temperature has 3 entries for 2 RVQ layers"):
        policy.predict_action_chunk(obs)
    with pytest.raises(ValueError, match="temperature has 1 entries for 2 RVQ layers"):
        make_policy(layers=2, temperature=[0.3])


def test_reset_clears_history_and_pads_episode_start():
    policy = make_policy().eval()
    policy.select_action(np.ones((2, 2), np.float32))
    assert torch.equal(policy._history["state"], torch.ones(2, 3, 2))  # start padded by repetition
    policy.select_action(np.full((2, 2), 2.0, np.float32))
    assert torch.equal(policy._history["state"][:, -1], torch.full((2, 2), 2.0))
    policy.reset(np.array([True, False]))  # env 0 finished: only its history restarts
    policy.select_action(np.full((2, 2), 5.0, np.float32))
    assert torch.equal(policy._history["state"][0], torch.full((3, 2), 5.0))
    assert torch.equal(policy._history["state"][1, :2], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    policy.reset()
    assert policy._history is None and policy._queue is None


def test_ensemble_averages_overlapping_chunks():
    policy = make_policy(execution="ensemble").eval()
    chunks = iter([torch.full((1, TA, 2), float(v)) for v in range(10)])
    policy.predict_action_chunk = lambda *a, **k: next(chunks)
    obs = np.zeros((1, 2), np.float32)
    actions = [policy.select_action(obs)[0, 0].item() for _ in range(6)]
    # step t averages the predictions made at t, t-1, ..., t-Ta+1: values t, t-1, ...
    assert actions[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert actions[5] == pytest.approx(np.mean([5, 4, 3, 2]))


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


def test_dropout_zeroes_a_fraction_p_scales_the_rest_and_is_off_in_eval():
    from vqbet.gpt import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.25)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # gradient = mask x scale
    assert torch.equal(drop.eval()(x), x)
    # Four lanes per 64-bit draw: neighbours independent (both dropped ~ p^2), any size and dtype.
    dropped = (drop.train()(torch.ones(400_001, dtype=torch.bfloat16)) == 0).view(-1)[:400_000].view(-1, 4)
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 0)):
        assert abs((dropped[:, a] & dropped[:, b]).float().mean().item() - 0.25**2) < 0.005
    assert not torch.equal(drop(torch.ones(1000)), drop(torch.ones(1000)))
    assert drop(torch.ones(10, dtype=torch.bfloat16)).dtype == torch.bfloat16  # no float32 mask promotion


def test_cpu_training_attention_equals_the_fused_kernel_and_stays_causal():
    """CPU training takes an explicit bmm-softmax-bmm attention (faster there); its values and
    gradients equal scaled_dot_product_attention's, and with dropout no query sees a later key."""
    from vqbet.gpt import CausalSelfAttention

    torch.manual_seed(0)
    attention = CausalSelfAttention(24, 4, dropout=0.0).train()
    x = torch.randn(3, 7, 24, requires_grad=True)
    y = attention(x)
    b, t, c = x.shape
    q, k, v = (z.view(b, t, 4, 6).transpose(1, 2) for z in attention.qkv(x).split(c, dim=2))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = attention.proj(ref.transpose(1, 2).reshape(b, t, c))
    torch.testing.assert_close(y, ref)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(grad, ref_grad)

    attention = CausalSelfAttention(24, 4, dropout=0.5).train()
    x = torch.randn(2, 7, 24, requires_grad=True)
    (grad,) = torch.autograd.grad(attention(x)[:, 3].sum(), x)
    assert grad[:, 4:].abs().max() == 0 and grad[:, :4].abs().min() > 0


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


def test_amp_is_bf16_autocast_where_bf16_is_native_and_float32_elsewhere(monkeypatch, capsys):
    from vqbet import train_policy as tp

    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    monkeypatch.setattr(tp, "native_bf16", lambda device: True)
    with tp.training_autocast(cpu, True):
        assert layer(x).dtype == torch.bfloat16
    with tp.training_autocast(cpu, False):
        assert layer(x).dtype == torch.float32
    monkeypatch.setattr(tp, "native_bf16", lambda device: False)
    with tp.training_autocast(cpu, True, say=True):
        assert layer(x).dtype == torch.float32
    assert "no native bf16" in capsys.readouterr().out


def test_bf16_training_keeps_float32_state_and_learns_like_float32(tmp_path, monkeypatch):
    from vqbet import train_policy as tp

    monkeypatch.setattr(tp, "native_bf16", lambda device: True)
    policy, state = fitted_policy(tmp_path / "bf16", steps=150, dropout=0.0)
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    monkeypatch.setattr(tp, "native_bf16", lambda device: False)
    _, reference = fitted_policy(tmp_path / "fp32", steps=150, dropout=0.0)
    final = [h["loss"] for h in state["history"] if "loss" in h]
    final_fp32 = [h["loss"] for h in reference["history"] if "loss" in h]
    assert final[-1] < 0.5 * final[0]
    assert final[-1] == pytest.approx(final_fp32[-1], rel=0.25)
    assert final[-1] != final_fp32[-1]  # the autocast path really ran


Trained = tuple[torch.nn.Module, torch.optim.Optimizer]
CPU_FUSED_ADAMW = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)
"""torch 2.4 added the fused AdamW kernel for the CPU."""


def _adam_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer, Trained]:
    """A model with the library's optimizer and a copy with the per-tensor AdamW, same groups."""
    from vqbet.train import adamw, decay_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    return model, adamw(model, 1e-2, 0.1), (twin, torch.optim.AdamW(decay_groups(twin, 0.1), lr=1e-2))


def _adam_steps(pairs: list[Trained], steps: int) -> None:
    for i in range(steps):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(i))
        for model, opt in pairs:
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()


def test_the_library_adamw_is_fused_on_cpu_and_steps_like_the_per_tensor_loop():
    model, opt, (twin, reference) = _adam_pair()
    assert bool(opt.param_groups[0]["fused"]) == CPU_FUSED_ADAMW
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # matrices only
    _adam_steps([(model, opt), (twin, reference)], 5)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))


def test_a_per_tensor_optimizer_state_resumes_into_the_fused_one():
    from vqbet.train import adamw
    from vqbet.train_state import optimizer_from_files, optimizer_to_files

    model, _, (twin, reference) = _adam_pair()
    _adam_steps([(twin, reference)], 3)
    model.load_state_dict(twin.state_dict())
    tensors, meta = optimizer_to_files(reference)  # written by a run without the fused kernel
    assert meta["param_groups"][0]["fused"] is None
    resumed = adamw(model, 1e-2, 0.1)
    optimizer_from_files(resumed, tensors, meta)
    # The kernel is this machine's choice, not state.
    assert bool(resumed.param_groups[0]["fused"]) == CPU_FUSED_ADAMW
    _adam_steps([(model, resumed), (twin, reference)], 3)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
