"""The fast training path: bf16 autocast, cheap dropout masks, CPU attention, fused AdamW."""

import copy

import pytest
import torch
from policy_helpers import fitted_policy


def test_dropout_zeroes_a_fraction_p_scales_the_rest_and_is_off_in_eval():
    from vqbet.nn.gpt import Dropout

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
    from vqbet.nn.gpt import CausalSelfAttention

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


def test_amp_is_bf16_autocast_where_bf16_is_native_and_float32_elsewhere(monkeypatch, capsys):
    from vqbet.training import device as tp

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
    from vqbet.training import device as tp

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
    from vqbet.nn.optim import adamw, decay_groups

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
    from vqbet.nn.optim import adamw
    from vqbet.training.state import optimizer_from_files, optimizer_to_files

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
