"""VQ-BeT acting: queues, receding horizon, ensembling, code sampling, per-env resets."""

import numpy as np
import pytest
import torch
from policy_helpers import TA, make_policy

from vqbet.policies.vqbet import sample_codes


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
    # Seeded before the policy is built: its random weights must not depend on the tests run before.
    # min_p this close to 1: two codes within 1e-5 of each other's probability are vanishingly rare.
    torch.manual_seed(0)
    policy = make_policy(layers=2, temperature=1.0, min_p=0.99999).eval()
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
