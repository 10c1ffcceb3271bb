"""vqbet.evaluation.results (scripts/results_table.py): seeds grouped per method, means and pooled intervals,
re-evaluations."""

import json
from pathlib import Path

import pytest

from vqbet.evaluation import results as results_table
from vqbet.evaluation.metrics import wilson_interval


def show(runs, **options):
    """What scripts/results_table.py prints for these run folders."""
    print(results_table.results_report(runs, **options))


def _write(path: Path, success: float, entropy: float, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "env_id": "vqbet/BlockPush-v0",
        "summary": {"episodes": 100, "success_rate": success, "order_entropy": entropy, "mean_p2": success},
        "expert_success_rate": 1.0,
        "expert_order_entropy": 1.4,
        **extra,
    }
    path.write_text(json.dumps(results))


def test_groups_seeds_and_prefers_the_named_re_evaluation(tmp_path, capsys):
    _write(tmp_path / "vqbet-seed0" / "results.json", 0.8, 1.2, train_seconds=100.0)
    _write(tmp_path / "vqbet-seed1" / "results.json", 0.6, 1.0, train_seconds=300.0)
    _write(tmp_path / "vqbet-seed1" / "eval" / "t0.6" / "results.json", 0.7, 1.4)
    _write(tmp_path / "mlp-seed0" / "results.json", 0.1, 0.0, train_seconds=10.0)
    (tmp_path / "bet-seed0").mkdir()  # unfinished: no results.json
    (tmp_path / "offline-seed0").mkdir()  # trained without a simulator: no success rate
    (tmp_path / "offline-seed0" / "results.json").write_text(json.dumps({"mode": "offline", "offline": {}}))
    runs = sorted(tmp_path.iterdir())

    groups, skipped = results_table.group_runs(runs, None)
    assert skipped == [tmp_path / "bet-seed0", tmp_path / "offline-seed0"]
    assert sorted(groups) == [("BlockPush", "mlp"), ("BlockPush", "vqbet")]
    plain = results_table.summarize_group(groups[("BlockPush", "vqbet")])
    assert plain["per_seed"] == [0.8, 0.6] and plain["success"] == pytest.approx(0.7)
    assert plain["ci"] == wilson_interval(140, 200)
    assert plain["train_seconds"] == pytest.approx(200.0)

    groups, _ = results_table.group_runs(runs, "t0.6")
    s = results_table.summarize_group(groups[("BlockPush", "vqbet")])
    # Seed 1 comes from its re-evaluation, its training time still from the training results.
    assert s["per_seed"] == [0.8, 0.7] and s["entropy"] == pytest.approx(1.3)
    assert s["train_seconds"] == pytest.approx(200.0) and s["metrics"] == {"p2": pytest.approx(0.75)}

    show(runs, eval_name="t0.6", per_seed=True)
    out = capsys.readouterr().out
    assert "| BlockPush | expert (training demonstrations) | - | 1.000 |" in out
    assert "| BlockPush | vqbet | 2 x 100 | 0.75 (0.80 / 0.70) |" in out
    assert "| BlockPush | vqbet, seed 1 | 1 x 100 | 0.70 (0.70) |" in out
    assert "skipped (no results.json, or an offline run): " + str(tmp_path / "bet-seed0") in out


def test_a_row_that_mixes_acting_settings_or_evaluation_seeds_is_flagged(tmp_path, capsys):
    for seed in (0, 1, 2):
        run = tmp_path / f"vqbet-seed{seed}"
        _write(run / "results.json", 0.8, 1.2, eval_seed=1000000)
        (run / "config.yaml").write_text("policy:\n  name: vqbet\n  temperature: 0.3\n  execution: queue\n")
    # Seeds 0 and 1 re-evaluated with min_p; seed 2 not: --eval falls back to its training results.
    for seed in (0, 1):
        _write(
            tmp_path / f"vqbet-seed{seed}" / "eval" / "minp" / "results.json",
            0.7,
            1.3,
            eval_seed=1000000,
            act={"temperature": 1.0, "min_p": 0.5},
        )
    _write(tmp_path / "vqbet-seed1" / "eval" / "held" / "results.json", 0.7, 1.3, eval_seed=2000000)
    runs = sorted(tmp_path.iterdir())

    show(runs)
    assert "warning" not in capsys.readouterr().out  # one config, one seed range: nothing to say
    show(runs, eval_name="minp")
    out = capsys.readouterr().out
    assert (
        "warning: BlockPush vqbet mixes settings (seed 0: temperature 1.0, min_p 0.5, execution queue" in out
    )
    assert "seed 2: temperature 0.3, min_p 0.0, execution queue, first seed 1000000)" in out
    show(runs, eval_name="held")
    assert (
        "seed 1: temperature 0.3, min_p 0.0, execution queue, first seed 2000000" in capsys.readouterr().out
    )
    (tmp_path / "vqbet-seed0" / "config.yaml").write_text("policy: [unclosed\n")
    with pytest.raises(ValueError, match=r"vqbet-seed0/config\.yaml: not valid YAML"):
        show(runs)


def test_bad_results_name_the_file(tmp_path):
    bad = tmp_path / "vqbet-seed0" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"vqbet-seed0/results\.json: not valid JSON"):
        show([bad.parent])
    bad.write_text(json.dumps({"env_id": "vqbet/PushT-v0"}))
    with pytest.raises(ValueError, match="no 'summary' key"):
        show([bad.parent])
    with pytest.raises(FileNotFoundError, match="not run folders"):
        show([tmp_path / "missing"])


def test_runs_on_other_demonstrations_get_their_own_expert_row(tmp_path, capsys):
    _write(tmp_path / "vqbet-seed0" / "results.json", 0.8, 1.2)
    dart = tmp_path / "vqbet-dart-seed0" / "results.json"
    _write(dart, 0.99, 1.3, expert_success_rate=0.93, demonstrations_perturb=0.03)
    # No successful episode: the summary has no order entropy, which counts as 0.
    results = json.loads(dart.read_text())
    results["summary"] = {"episodes": 100, "success_rate": 0.0}
    (tmp_path / "mlp-dart-seed0").mkdir()
    (tmp_path / "mlp-dart-seed0" / "results.json").write_text(json.dumps(results))
    show(sorted(tmp_path.iterdir()))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| BlockPush")]
    assert [r.split(" | ")[1] for r in rows] == [
        "expert (DART-perturbed training demonstrations)",
        "mlp-dart",
        "vqbet-dart",
        "expert (training demonstrations)",
        "vqbet",
    ]
    assert "| 0.000 (0%) |" in rows[1]


def test_difference_interval_matches_newcombe_1998():
    """Newcombe (1998), Statistics in Medicine 17: 873-890, Table II, method 10."""
    from vqbet.evaluation.metrics import difference_interval

    for (a, n, b, m), (low, high) in {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
    }.items():
        d, lo, hi = difference_interval(a, n, b, m)
        assert d == pytest.approx(a / n - b / m)
        assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_compare_two_methods_pools_their_seeds(tmp_path, capsys):
    for seed, (v, b) in enumerate([(0.8, 0.6), (0.7, 0.7), (0.9, 0.6)]):
        _write(tmp_path / f"vqbet-seed{seed}" / "results.json", v, 1.2)
        _write(tmp_path / f"bet-seed{seed}" / "results.json", b, 1.0)
    runs = sorted(tmp_path.iterdir())
    show(runs, compare=("vqbet", "bet"))
    out = capsys.readouterr().out
    assert "BlockPush: vqbet vs bet: pooled success 0.800 (0.75-0.84, 300 episodes) vs 0.633" in out
    assert "pooled intervals disjoint; difference +0.167, 95% CI +0.095 to +0.236" in out
    with pytest.raises(ValueError, match="no task has runs of both 'vqbet' and 'mlp'"):
        show(runs, compare=("vqbet", "mlp"))
