"""The autoregressive token policy: the key/value cache equals the full pass, greedy acting equals
the teacher-forced argmax, every tokenizer (FAST with its end token) trains and acts, invalid FAST
sequences are drawn again then fall back by the documented rule and are counted, checkpoints
keep FAST's vocabulary, and what cannot export says so."""

import dataclasses
import threading

import numpy as np
import pytest
import torch
from policy_helpers import TA, two_mode_data

from vqbet.data import TrajectoryWindows
from vqbet.nn.gpt import GPT
from vqbet.policies import ARPolicy, load_policy, policy_class
from vqbet.tokenizers.fit import TokenizerFitConfig

SMALL = dict(
    obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, n_layer=1, n_head=2, n_embd=32, dropout=0.0
)
TOKENIZERS = {
    "rvq": dict(num_layers=2, codebook_size=8, latent_dim=16, hidden_dim=32),
    "fsq": dict(num_layers=1, fsq_levels=[5, 3], latent_dim=16, hidden_dim=32),
    "kmeans": dict(num_bins=8),
    "bins": dict(num_bins=16),
    "fast": dict(vocab_size=64, scale=10.0),
}


def trained(tokenizer: str, steps: int = 60, **extra) -> tuple[ARPolicy, TrajectoryWindows, list[float]]:
    if tokenizer == "fast":
        pytest.importorskip("tokenizers")
    torch.manual_seed(0)
    windows = TrajectoryWindows(two_mode_data(episodes=24), obs_window=3, action_chunk=TA)
    policy = policy_class("ar").build({**SMALL, **extra}, {"name": tokenizer, **TOKENIZERS[tokenizer]})
    policy.fit_statistics(windows, seed=0, tokenizer_fit=TokenizerFitConfig(steps=30), progress=False)
    policy.freeze_statistics()
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    loader = torch.utils.data.DataLoader(windows, batch_size=64, shuffle=True)
    losses = []
    while len(losses) < steps:
        for batch in loader:
            loss, _ = policy(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return policy.eval(), windows, losses


def test_the_key_value_cache_gives_the_full_pass_token_by_token():
    torch.manual_seed(0)
    gpt = GPT(block_size=9, n_layer=2, n_head=2, n_embd=16, dropout=0.0).eval()
    x = torch.randn(3, 9, 16)
    cache = gpt.new_cache(3, x.device, x.dtype)
    parts = [gpt.forward_cached(x[:, :4], cache, 0)] + [
        gpt.forward_cached(x[:, i : i + 1], cache, i) for i in range(4, 9)
    ]
    torch.testing.assert_close(torch.cat(parts, dim=1), gpt(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="positions up to 10 exceed block_size 9"):
        gpt.forward_cached(x[:, :1], cache, 9)
    # The lean one-token steps: the same features from a prefill, and the same keys and values.
    decoder = gpt.decoder(3, x.device, x.dtype)
    steps = [decoder.prefill(x[:, :4])] + [decoder.step(x[:, i])[:, None] for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), gpt(x), rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(decoder.cache, cache, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="position 9 exceeds block_size 9"):
        decoder.step(x[:, 0])
    with pytest.raises(ValueError, match="made for 3 rows, got 2"):
        decoder.prefill(x[:2, :4])


def test_the_decoder_is_kept_and_follows_weight_changes():
    """A decoder keeps its cache and weight layout across sequences, and lays the weights out
    again after an optimizer step, a load or a parameter replaced, never decoding with stale ones."""
    torch.manual_seed(0)
    gpt = GPT(block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0).eval()
    x = torch.randn(2, 8, 16)

    def decoded() -> torch.Tensor:
        decoder = gpt.decoder(2, x.device, x.dtype)
        first = decoder.prefill(x[:, :3])
        return torch.cat([first, *(decoder.step(x[:, i])[:, None] for i in range(3, 8))], dim=1)

    torch.testing.assert_close(decoded(), gpt(x), rtol=1e-5, atol=1e-6)
    assert gpt.decoder(2, x.device, x.dtype) is gpt.decoder(2, x.device, x.dtype)
    assert gpt.decoder(1, x.device, x.dtype) is not gpt.decoder(2, x.device, x.dtype)
    optimizer = torch.optim.SGD(gpt.parameters(), lr=0.5)
    gpt(x).square().mean().backward()
    optimizer.step()
    torch.testing.assert_close(decoded(), gpt(x), rtol=1e-5, atol=1e-6)
    other = GPT(block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0).eval()
    gpt.load_state_dict(other.state_dict())
    torch.testing.assert_close(decoded(), other(x), rtol=1e-5, atol=1e-6)
    gpt.blocks[0].mlp.fc.weight = torch.nn.Parameter(torch.randn(64, 16))  # a new object, not a write
    torch.testing.assert_close(decoded(), gpt(x), rtol=1e-5, atol=1e-6)
    for batch in range(3, 9):  # only the last four (batch, device, dtype, thread) are kept
        gpt.decoder(batch, x.device, x.dtype)
    assert len(gpt._decoders) == 4
    elsewhere = []  # another thread acting at once decodes into a cache of its own
    thread = threading.Thread(target=lambda: elsewhere.append(gpt.decoder(2, x.device, x.dtype)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not gpt.decoder(2, x.device, x.dtype)


def test_an_export_after_training_on_takes_the_weights_as_they_are_then(tmp_path):
    """The decoding layout kept from acting before more training must not reach the program:
    export pins the layout of the weights it exports, and the program acts as the eager policy."""
    from vqbet.policies.export import ExportedPolicy

    policy, windows, _ = trained("rvq", steps=5, temperature=0.0)
    obs = torch.from_numpy(np.stack([np.asarray(windows[i]["obs"]) for i in range(0, 40, 5)]))
    before = policy.predict_action_chunk(obs)  # lays the weights out for decoding
    with torch.no_grad():
        for p in policy.gpt.parameters():
            p.add_(0.05 * torch.randn_like(p))
    acting = ExportedPolicy.load(policy.export(tmp_path / "deploy", max_batch=16))  # no acting between
    after = policy.predict_action_chunk(obs)
    assert not torch.allclose(after, before)  # the change reached the eager policy's decoding
    assert torch.equal(acting.predict_action_chunk(obs.numpy()), after)


def teacher_forced(policy: ARPolicy, observed: torch.Tensor, targets: torch.Tensor):
    """The full causal pass over [obs, BOS, targets] (targets (N, steps), -100 after an end token):
    (token logits (N, steps, V + 1), the offset head's input: the output that predicts each row's
    last token and that token's embedding (N, 2C))."""
    inputs = torch.cat([torch.full_like(targets[:, :1], policy.vocab + 1), targets[:, :-1]], dim=1)
    inputs = inputs.masked_fill(inputs == -100, policy.vocab)
    sequence = torch.cat([policy.obs_embed(observed), policy.token_embed(inputs)], dim=1)
    out = policy.gpt(sequence)[:, policy.config.obs_window :]
    rows, final = torch.arange(len(out)), (targets != -100).sum(dim=1) - 1
    last = torch.cat([out[rows, final], policy.token_embed(targets[rows, final])], dim=-1)
    return policy.head(out), last


@pytest.mark.parametrize(
    "tokenizer, offset", [(name, True) for name in sorted(TOKENIZERS)] + [("rvq", False), ("fast", False)]
)
def test_every_tokenizer_trains_and_greedy_acting_is_the_teacher_forced_argmax(tokenizer, offset):
    policy, windows, losses = trained(tokenizer, temperature=0.0, offset=offset)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    obs = torch.stack([windows[i]["obs"] for i in range(0, 40, 4)])
    observed = policy.observe(obs)
    tokens, last = policy._sample(observed)  # greedy, one token at a time through the cache
    targets = (
        tokens.clone()
        if tokens.shape[1] == policy.steps
        else torch.cat(
            [tokens, tokens.new_full((len(tokens), policy.steps - tokens.shape[1]), policy.vocab)], dim=1
        )
    )
    if policy.variable:  # after each row's end token: no target
        is_end = targets == policy.vocab
        targets[is_end.int().cumsum(1) - is_end.int() > 0] = -100
    logits, forced_last = teacher_forced(policy, observed, targets)
    if not policy.variable:
        logits = logits[..., : policy.vocab]
        assert torch.equal(logits.argmax(-1), tokens)
    else:  # up to and with each row's end token
        kept = targets[:, : tokens.shape[1]] != -100
        assert torch.equal(logits[:, : tokens.shape[1]].argmax(-1)[kept], tokens[kept])
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (len(obs), TA, 2) and chunk.isfinite().all()
    if not offset:
        assert last is None and policy.offset_head is None
        return
    # The offset is read where the full pass reads each row's last token, and corrects the chunk.
    torch.testing.assert_close(last, forced_last, rtol=1e-4, atol=1e-5)
    decoded = policy._decode(tokens, None)[0]
    normalizer = policy.tokenizer.normalizer
    offset = policy.offset_head(last).view(-1, TA, 2)
    corrected = normalizer.unnormalize(normalizer.normalize(decoded) + offset)
    torch.testing.assert_close(chunk, corrected, rtol=1e-4, atol=1e-5)


def test_fast_targets_end_with_the_end_token_and_ignore_the_rest():
    policy, windows, _ = trained("fast", steps=1)
    chunks = torch.from_numpy(windows.action_chunks()[:16])
    tokens, lengths = policy.tokenizer.encode(chunks)
    targets = policy._targets(chunks)
    assert targets.shape == (16, TA * 2 + 1)
    for row, n in enumerate(lengths.tolist()):
        assert targets[row, :n].tolist() == tokens[row, :n].tolist()
        assert targets[row, n] == policy.vocab and (targets[row, n + 1 :] == -100).all()


def test_fast_training_stops_each_batch_at_its_longest_sequence_with_the_same_loss():
    policy, windows, _ = trained("fast", steps=1)
    policy.eval()  # no dropout: the two passes must agree exactly
    batch = torch.utils.data.default_collate([windows[i] for i in range(0, 64, 2)])
    loss, metrics = policy(batch)
    # The whole maximum length, as without the cut: the same token loss and accuracy; and the
    # offset's L1 error against the chunk FAST's BPE decode gives (absolute actions here).
    obs, action = policy.check_batch(batch)
    targets = policy._targets(action[:, -1])
    lengths = (targets != -100).sum(dim=1)
    assert lengths.max() < policy.steps  # the batch is shorter than the maximum: a cut happened
    logits, last = teacher_forced(policy, policy.observe(obs), targets)
    tokens = policy.check_batch(batch)[1][:, -1]
    normalizer = policy.tokenizer.normalizer
    decoded = normalizer.normalize(policy.tokenizer.decode(*policy.tokenizer.encode(tokens)))
    offset_error = (decoded + policy.offset_head(last).view(-1, TA, 2) - normalizer.normalize(tokens)).abs()
    mask = batch["action_mask"][:, -1, :, None] if "action_mask" in batch else 1.0
    token_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    offset_loss = (offset_error * mask).sum() / offset_error.numel()
    torch.testing.assert_close(loss, token_loss + policy.config.offset_loss_weight * offset_loss)
    assert metrics["token_loss"] == pytest.approx(token_loss.item(), abs=1e-5)
    assert metrics["offset_loss"] == pytest.approx(offset_loss.item(), abs=1e-5)
    right = ((logits.argmax(-1) == targets) & (targets != -100)).sum() / lengths.sum()
    assert metrics["token_accuracy"] == pytest.approx(right.item(), abs=1e-6)


def test_the_offset_corrects_what_the_tokens_decode():
    policy, windows, _ = trained("rvq", steps=120, temperature=0.0)
    batch = torch.utils.data.default_collate([windows[i] for i in range(len(windows))])
    obs, action = policy.check_batch(batch)
    normalizer = policy.tokenizer.normalizer
    target = normalizer.normalize(action[:, -1])
    targets = policy._targets(action[:, -1])
    with torch.no_grad():
        last = teacher_forced(policy, policy.observe(obs), targets)[1]
        decoded = policy.tokenizer.round_trip_normalized(target)
        corrected = decoded + policy.offset_head(last).view_as(target)
    # The true tokens' decode is a code's centre; the offset learnt from the sequence closes most
    # of the rest of the way to the true chunk.
    assert (corrected - target).abs().mean() < 0.3 * (decoded - target).abs().mean()


def test_invalid_fast_sequences_are_drawn_again_then_fall_back_and_are_counted(monkeypatch):
    policy, _, _ = trained("fast", steps=20, temperature=1.0, resample=2)
    real = policy._decode
    draws = []

    def every_other_invalid(tokens, last):
        chunks = real(tokens, last)[0]
        draws.append(len(tokens))
        scripted = {1: [True, False, False, True], 2: [True, False]}  # rows 1, 2; then row 2 again
        return chunks, torch.tensor(scripted.get(len(draws), [False] * len(tokens)))

    monkeypatch.setattr(policy, "_decode", every_other_invalid)
    policy.reset_decode_stats()
    chunk = policy.predict_action_chunk(torch.zeros(4, 3, 2))
    assert chunk.shape == (4, TA, 2) and draws == [4, 2, 1]  # resampled twice, only the invalid rows
    assert policy.invalid_rows.tolist() == [False, False, True, False]
    stats = policy.decode_stats()
    assert stats["chunks"] == 4 and stats["resampled"] == 3 and stats["invalid"] == 4
    assert stats["invalid_rate"] == pytest.approx(4 / 7)

    # Acting: an invalid chunk plays the previous chunk's remainder (last action held), not itself.
    monkeypatch.setattr(policy, "_decode", real)
    policy.config.execute_steps = 2
    policy.reset()
    obs = np.zeros((1, 2), np.float32)
    first = [policy.select_action(obs) for _ in range(2)]
    previous = policy._queue[0].clone()
    never_valid = lambda tokens, last: (real(tokens, last)[0], torch.zeros(len(tokens), dtype=torch.bool))  # noqa: E731
    monkeypatch.setattr(policy, "_decode", never_valid)
    after = policy.select_action(obs)
    torch.testing.assert_close(after[0], previous[2])
    torch.testing.assert_close(policy._queue[0], previous[[2, 3, 3, 3]])
    assert policy.decode_stats()["fallback"] == 1
    assert len(first) == 2


def test_a_fast_policy_round_trips_its_vocabulary_and_refuses_export(tmp_path):
    policy, _, _ = trained("fast", steps=10, temperature=0.0)
    folder = policy.save_pretrained(tmp_path / "ckpt")
    assert (folder / "bpe.json").is_file()
    loaded = load_policy(folder)
    obs = torch.randn(5, 3, 2) * 0.1
    assert torch.equal(loaded.predict_action_chunk(obs), policy.predict_action_chunk(obs))
    with pytest.raises(ValueError, match=r"'fast' tokenizer decodes its tokens through a BPE vocabulary"):
        policy.export(tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()


def test_code_heads_refuse_a_variable_length_tokenizer_and_name_the_policy_that_takes_it():
    pytest.importorskip("tokenizers")
    with pytest.raises(
        ValueError, match=r"the 'fast' tokenizer's chunks take different token counts: use policy=ar"
    ):
        policy_class("vqbet").build({**SMALL, "n_layer": 1}, {"name": "fast"})


def test_top_p_keeps_only_the_nucleus():
    from vqbet.policies.vqbet import sample_codes

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(20000, -1)
    counts = torch.bincount(sample_codes(logits, 1.0, top_p=0.8), minlength=4).float() / 20000
    torch.testing.assert_close(counts, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.015, rtol=0)
    assert (sample_codes(logits, 1.0, top_p=0.4) == 0).all()


def test_a_fast_policy_is_judged_offline_with_its_tokenizers_round_trip():
    from vqbet.evaluation.offline import evaluate_offline

    policy, windows, _ = trained("fast", steps=5, temperature=1.0)
    metrics = evaluate_offline(policy, windows, samples=2)
    # The reconstruction error through FAST's BPE tokens, computed here from encode and decode.
    batch = torch.utils.data.default_collate([windows[i] for i in range(len(windows))])
    chunk, mask = batch["action"][:, -1], batch["action_mask"][:, -1, :, None]
    normalizer = policy.tokenizer.normalizer
    error = normalizer.normalize(
        policy.tokenizer.decode(*policy.tokenizer.encode(chunk))
    ) - normalizer.normalize(chunk)
    expected = (error.square() * mask).sum() / (mask.sum() * chunk.shape[-1])
    assert metrics["reconstruction_mse"] == pytest.approx(expected.item(), rel=1e-4, abs=1e-9)
    assert 0.0 <= metrics["first_token_accuracy"] <= 1.0 and "used_fraction/0" not in metrics
    assert np.isfinite(metrics["greedy_mse"]) and metrics["windows"] == len(windows)


def test_each_target_step_sees_its_observations_and_its_own_earlier_tokens_only():
    torch.manual_seed(0)
    policy = policy_class("ar").build({**SMALL, "target_steps": 3}, {"name": "kmeans", "num_bins": 8})
    to, s = policy.config.obs_window, policy.steps
    observed = torch.randn(4, to, policy.obs_features)
    targets = torch.randint(0, policy.vocab, (4, 3, s))
    with torch.no_grad():
        out, last = policy.eval().teacher_forced(observed, targets)
        for i in range(3):  # step i's tokens alone after o_1 .. o_{i+1}, at acting's token positions
            inputs = torch.cat([torch.full((4, 1), policy.vocab + 1), targets[:, i, :-1]], dim=1)
            sequence = torch.cat([policy.obs_embed(observed[:, : i + 1]), policy.token_embed(inputs)], dim=1)
            positions = torch.cat([torch.arange(i + 1), torch.arange(to, to + s)])
            alone = policy.gpt(sequence, positions=positions)[:, i + 1 :]
            torch.testing.assert_close(out[:, i], alone, rtol=1e-5, atol=1e-5)
        # The last step is the one-step pass acting reproduces, offset input included.
        single, single_last = policy.teacher_forced(observed, targets[:, -1])
        torch.testing.assert_close(out[:, -1], single, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(last[:, -1], single_last, rtol=1e-5, atol=1e-5)
    # Training's explicit attention (CPU, with grad) takes the same mask.
    torch.testing.assert_close(policy.train().teacher_forced(observed, targets)[0], out, rtol=1e-5, atol=1e-5)


def test_training_on_several_window_steps_sums_every_steps_token_and_offset_loss():
    policy, windows, losses = trained("rvq", steps=60, target_steps=3)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    batch = torch.utils.data.default_collate([windows[i] for i in range(0, 64, 2)])
    loss, metrics = policy(batch)
    obs, action = policy.check_batch(batch)
    targets = torch.stack([policy._targets(action[:, i]) for i in range(3)], dim=1)  # (B, 3, S)
    out, last = policy.teacher_forced(policy.observe(obs), targets)
    logits = policy.head(out)
    token_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
    normalizer = policy.tokenizer.normalizer
    target = normalizer.normalize(action.flatten(0, 1))  # (B * 3, TA, 2)
    offsets = policy.offset_head(last.flatten(0, 1)).view_as(target)
    corrected = policy.tokenizer.round_trip_normalized(target) + offsets
    mask = batch["action_mask"].flatten(0, 1)[..., None] if "action_mask" in batch else 1.0
    error = (corrected - target).abs()
    offset_loss = (error * mask).sum() / error.numel()  # over every step (see masked_mean)
    torch.testing.assert_close(loss, token_loss + policy.config.offset_loss_weight * offset_loss)
    # The accuracies are the last step's, the chunk acting predicts.
    right = (logits[:, -1].argmax(-1) == targets[:, -1]).float().mean()
    assert metrics["token_accuracy"] == pytest.approx(right.item(), abs=1e-6)


@pytest.mark.parametrize("steps", [0, 4, True, 1.5])
def test_target_steps_outside_the_window_are_refused(steps):
    with pytest.raises(ValueError, match=r"target_steps must be an integer in \[1, obs_window=3\]"):
        policy_class("ar").build({**SMALL, "target_steps": steps}, {"name": "kmeans", "num_bins": 8})


def test_a_focal_gamma_weighs_each_kept_token_by_its_miss_and_ignores_the_rest():
    policy, windows, _ = trained("fast", steps=1, focal_gamma=2.0)
    batch = torch.utils.data.default_collate([windows[i] for i in range(0, 64, 2)])
    obs, action = policy.check_batch(batch)
    targets = policy._targets(action[:, -1])
    targets = targets[:, : int((targets != -100).sum(dim=1).max())]
    logits, _ = teacher_forced(policy, policy.observe(obs), targets)
    kept = targets != -100
    p = torch.softmax(logits, dim=-1).gather(-1, targets.clamp_min(0)[..., None])[..., 0][kept]
    focal = (-((1 - p) ** 2) * p.log()).mean()
    assert policy(batch)[1]["token_loss"] == pytest.approx(focal.item(), rel=1e-5)
    with pytest.raises(ValueError, match="focal_gamma must be a number >= 0"):
        policy_class("ar").build({**SMALL, "focal_gamma": -1.0}, {"name": "kmeans", "num_bins": 8})


def test_history_dropout_trains_on_windows_of_their_last_step_repeated_and_only_in_training():
    policy, windows, _ = trained("rvq", steps=1)
    batch = torch.utils.data.default_collate([windows[i] for i in range(0, 64, 2)])
    still = {**batch, "obs": batch["obs"][:, -1:].expand_as(batch["obs"]).clone()}
    assert not torch.equal(still["obs"], batch["obs"])  # the windows move
    reference = policy(batch)[0]
    for share, expected in ((1.0, policy(still)[0]), (0.0, reference)):
        policy.config = dataclasses.replace(policy.config, history_dropout=share)
        policy.train()
        torch.testing.assert_close(policy(batch)[0], expected)
        policy.eval()
        torch.testing.assert_close(policy(batch)[0], reference)  # acting and validation see the window
    policy.config = dataclasses.replace(policy.config, history_dropout=0.5)
    policy.train()
    torch.manual_seed(0)
    drop = torch.rand(len(batch["action"])) < 0.5
    assert 0 < drop.sum() < len(drop)
    mixed = {**batch, "obs": torch.where(drop[:, None, None], still["obs"], batch["obs"])}
    torch.manual_seed(0)
    torch.testing.assert_close(policy(batch)[0], policy.eval()(mixed)[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"history_dropout": 1.5}, r"history_dropout must be a number in \[0, 1\], got 1.5"),
        ({"history_dropout": "half"}, r"history_dropout must be a number in \[0, 1\], got 'half'"),
        ({"history_dropout": 0.5, "target_steps": 2}, "history_dropout needs target_steps=1"),
    ],
)
def test_bad_history_dropout_is_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        policy_class("ar").build({**SMALL, **extra}, {"name": "kmeans", "num_bins": 8})
