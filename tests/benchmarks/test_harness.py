"""Benchmark helpers: paired measurements and the step of another checkout in its own process."""

import sys
from pathlib import Path

import pytest
import torch
from harness import alternating_pairs, checkout_samples_per_s

ROOT = Path(__file__).resolve().parents[2]


def test_alternating_pairs_take_medians_and_the_median_of_per_pair_ratios():
    calls = []
    first = iter([100.0, 50.0, 200.0])  # the machine drifts: each pair sees the same speed
    second = iter([150.0, 75.0, 400.0])

    def a() -> float:
        calls.append("a")
        return next(first)

    def b() -> float:
        calls.append("b")
        return next(second)

    theirs, ours, ratio = alternating_pairs(a, b, pairs=3)
    assert calls == ["a", "b"] * 3
    assert (theirs, ours, ratio) == (100.0, 150.0, 1.5)  # per-pair ratios 1.5, 1.5, 2.0


def test_a_checkout_is_measured_in_its_own_process_and_failures_are_named(tmp_path):
    assert checkout_samples_per_s(ROOT, batch=4, steps=1, threads=1, amp=False) > 0
    with pytest.raises(FileNotFoundError, match="not a checkout of vqbet"):
        checkout_samples_per_s(tmp_path, batch=4, steps=1, threads=1, amp=False)
    broken = tmp_path / "broken"
    (broken / "vqbet").mkdir(parents=True)
    (broken / "vqbet" / "__init__.py").write_text("")
    (broken / "vqbet" / "benchmark.py").write_text("raise ImportError('this checkout is broken')\n")
    with pytest.raises(RuntimeError, match=r"(?s)vqbet checkout .*broken.*this checkout is broken"):
        checkout_samples_per_s(broken, batch=4, steps=1, threads=1, amp=False)
    with pytest.raises(RuntimeError, match="has no benchmark config 'no such config'"):
        checkout_samples_per_s(ROOT, batch=4, steps=1, threads=1, amp=False, config="no such config")


def test_the_attention_a_b_runs_each_side_on_its_own_path_and_restores_the_model(monkeypatch):
    import harness

    from vqbet.nn.gpt import CausalSelfAttention

    original = CausalSelfAttention._explicit_attention
    explicit_calls, fused_calls = [], []

    def spy(self, q, k, v):
        explicit_calls.append(1)
        return original(self, q, k, v)

    sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa_spy(*args, **kwargs):
        fused_calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(CausalSelfAttention, "_explicit_attention", spy)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_spy)
    runs = []
    measure = harness.train_samples_per_s

    def counted(*args, **kwargs):
        before = len(explicit_calls), len(fused_calls)
        speed = measure(*args, **kwargs)
        runs.append((len(explicit_calls) > before[0], len(fused_calls) > before[1]))
        return speed

    monkeypatch.setattr(harness, "train_samples_per_s", counted)
    name = next(iter(harness.CONFIGS))
    fused, explicit, ratio = harness.attention_speedup(name, 4, 1, torch.device("cpu"), amp=False, pairs=2)
    # SDPA first in each pair (and only SDPA), then only the explicit path
    assert runs == [(False, True), (True, False), (False, True), (True, False)]
    assert fused > 0 and explicit > 0 and ratio > 0
    assert CausalSelfAttention._explicit_attention is spy  # the model class is as it was


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_a_b_measures_both_sides_in_processes_of_their_own():
    from harness import allocator_speedup

    default, retained, ratio = allocator_speedup(4, 2, 2, steps=1, threads=1, pairs=1)
    assert default > 0 and retained > 0
    assert ratio == pytest.approx(retained / default)  # one pair: its own ratio
