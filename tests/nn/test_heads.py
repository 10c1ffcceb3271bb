"""VQ-BeT's fused prediction heads: what each head may see, acting equals teacher forcing, decay
groups, and checkpoints of the older per-head layout."""

import pytest
import torch

from vqbet.nn.heads import PredictionHeads
from vqbet.nn.optim import decay_groups


def make_heads(sequential: bool = True, layers: int = 3) -> PredictionHeads:
    torch.manual_seed(0)
    return PredictionHeads(8, 4, 16, layers, 5, 6, sequential=sequential)


@pytest.mark.parametrize("sequential", [True, False])
def test_each_head_sees_only_the_codes_it_may(sequential):
    """Layer i's logits depend on the codes of layers < i (sequential) or on none; the offsets on
    every code."""
    heads = make_heads(sequential)
    h = torch.randn(7, 8)
    codes = torch.randint(0, 5, (7, 3))
    logits, offsets = heads(h, codes)
    assert logits.shape == (3, 7, 5) and offsets.shape == (7, 6)
    for layer in range(3):
        changed = codes.clone()
        changed[:, layer] = (changed[:, layer] + 1) % 5
        new_logits, new_offsets = heads(h, changed)
        for i in range(3):
            sees = sequential and layer < i
            assert torch.equal(new_logits[i], logits[i]) != sees, (layer, i)
        assert not torch.allclose(new_offsets, offsets)


@pytest.mark.parametrize("sequential", [True, False])
def test_fused_heads_equal_separate_mlps(sequential):
    """The masked fused first layer and the batched second layer compute exactly the per-head
    MLPs [h, e_<i] -> GELU -> GELU -> out (one joint code MLP of L x K outputs without sequential
    codes)."""
    heads = make_heads(sequential)
    h = torch.randn(5, 8)
    codes = torch.randint(0, 5, (5, 3))
    logits, offsets = heads(h, codes)
    e = [heads.code_embed[j, codes[:, j]] for j in range(3)]
    gelu = torch.nn.functional.gelu
    for i in range(heads.code_heads + 1):
        x = torch.cat([h, *e[: heads.visible(i)]], dim=-1)
        cols = slice(i * 16, (i + 1) * 16)
        first = gelu(x @ heads.w1[: x.shape[1], cols] + heads.b1[cols])
        second = gelu(first @ heads.w2[i] + heads.b2[cols])
        if i == heads.code_heads:
            torch.testing.assert_close(offsets, second @ heads.w_offset + heads.b_offset)
        elif sequential:
            torch.testing.assert_close(logits[i], second @ heads.w3[i] + heads.b3[i * 5 : (i + 1) * 5])
        else:
            joint = (second @ heads.w3[0] + heads.b3).view(5, 3, 5).transpose(0, 1)
            torch.testing.assert_close(logits, joint)


@pytest.mark.parametrize("sequential", [True, False])
def test_sampling_layer_by_layer_equals_teacher_forcing(sequential):
    heads = make_heads(sequential)
    h = torch.randn(9, 8)
    codes, offsets = heads.sample(h, lambda logits, layer: logits.argmax(-1))
    logits, forced_offsets = heads(h, codes)
    assert torch.equal(logits.argmax(-1), codes.T)
    torch.testing.assert_close(offsets, forced_offsets)


def test_fused_biases_are_not_weight_decayed():
    heads = make_heads()
    groups = decay_groups(heads, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {name for name, p in heads.named_parameters() if id(p) in decayed}
    assert names == {"code_embed", "w1", "w2", "w3", "w_offset"}


def test_hidden_first_layer_weights_stay_zero_so_acting_skips_the_mask():
    """Acting multiplies by w1 unmasked: training (AdamW with decay) must keep the hidden entries
    zero, and loading a state dict that has them non-zero masks them."""
    heads = make_heads()
    hidden = heads.mask == 0
    optimizer = torch.optim.AdamW(heads.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        logits, offsets = heads(torch.randn(6, 8), torch.randint(0, 5, (6, 3)))
        (logits.square().mean() + offsets.square().mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert heads.w1[hidden].abs().max() == 0 and heads.w1[~hidden].abs().min() > 0
    state = {k: v.clone() for k, v in heads.state_dict().items()}
    state["w1"] += 1.0
    heads.load_state_dict(state)
    assert heads.w1[hidden].abs().max() == 0
    h = torch.randn(4, 8)
    codes, offsets = heads.sample(h, lambda logits, layer: logits.argmax(-1))
    torch.testing.assert_close(offsets, heads(h, codes)[1])
