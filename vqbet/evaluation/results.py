"""Aggregate finished runs into the results tables of docs/results.md: one row per (task, method)
over its seeds (`results_report`; `python scripts/results_table.py runs/*/* [--eval t0.6]
[--per-seed] [--compare vqbet bet]`; `compare` adds each task's pooled difference in success
between two methods).

Each argument is a run folder (written by scripts/train.py). Its results come from
`<run>/eval/<name>/results.json` when `--eval name` is given and that file exists (a re-evaluation
by scripts/eval.py, e.g. at another acting temperature), else from `<run>/results.json`; folders
without results are listed as skipped. Runs group by task and by folder name without its
`-seed<N>` suffix (`vqbet-seed0`, `vqbet-seed1` -> `vqbet`). A row reports the mean success over
seeds, each seed's success, a Wilson 95% interval over all the group's episodes, the mean order
entropy (and its fraction of the expert's), the task's progress metrics and the mean training
wall time. Each task starts with the expert's row: the success and order entropy of the
demonstrations the runs were trained on (recorded in every results.json). A row whose seeds were
played with different acting options (temperature, min_p, execution: the run's config.yaml, then a
re-evaluation's overrides) or on different evaluation seeds gets a warning under the table naming
each run's setting: `--eval` falls back to a run's training results where the re-evaluation is missing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from vqbet.evaluation.metrics import difference_interval, wilson_interval
from vqbet.io.run_dir import RunDir

# Summary keys that are not task progress metrics.
_NOT_METRICS = {"mean_length", "mean_success", "mean_unstable"}
_SEED = re.compile(r"-seed(\d+)$")
# Acting options that change what a rollout does, with the value a config that lacks one meant.
_ACTING = {"temperature": None, "min_p": 0.0, "execution": None, "execute_steps": 0, "ensemble_decay": None}


def load_run(run: Path, eval_name: str | None) -> dict[str, Any] | None:
    """The results of one run folder, with `train_seconds` from its training results and
    `source` (the results.json read). None when the run has not finished."""
    trained = RunDir.of(run).results
    source = RunDir.of(run).evaluation(eval_name) / "results.json" if eval_name else trained
    if not source.exists():
        source = trained
    if not source.exists():
        return None
    try:
        results = json.loads(source.read_text())
        if source != trained and trained.exists():
            results["train_seconds"] = json.loads(trained.read_text()).get("train_seconds")
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err})") from None
    if results.get("mode") == "offline":
        return None  # judged on demonstrations, not rollouts: not a row of this table
    if "summary" not in results:
        raise ValueError(f"{source}: no 'summary' key: not a vqbet results.json")
    results["source"] = str(source)
    results["setting"] = _setting(run, results)
    return results


def _setting(run: Path, results: dict[str, Any]) -> str:
    """How a run's episodes were played: its config's acting options, a re-evaluation's overrides
    on top, and the first evaluation seed, as text ("" when nothing is known)."""
    policy: dict[str, Any] = {}
    config = RunDir.of(run).config
    if config.exists():
        try:
            policy = (yaml.safe_load(config.read_text()) or {}).get("policy") or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{config}: not valid YAML ({err})") from None
    acting = {k: policy.get(k, default) for k, default in _ACTING.items()}
    acting.update(results.get("act") or {})
    # execute_steps 0 (the whole chunk) is the default: left unsaid.
    parts = [
        f"{k} {_as_float(v)}" for k, v in acting.items() if v is not None and (k != "execute_steps" or v)
    ]
    if results.get("eval_seed") is not None:
        parts.append(f"first seed {results['eval_seed']}")
    return ", ".join(parts)


def _as_float(value: Any) -> Any:
    """1 and 1.0 are one temperature, whichever file wrote it."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def mixed_settings(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """One warning per row whose runs were played with different settings (see `_setting`)."""
    warnings = []
    for (task, method), members in sorted(groups.items()):
        if len({m["setting"] for m in members}) > 1:
            each = "; ".join(f"seed {m['seed_label']}: {m['setting'] or 'unknown'}" for m in members)
            warnings.append(f"warning: {task} {method} mixes settings ({each})")
    return warnings


def group_runs(
    runs: list[Path], eval_name: str | None
) -> tuple[dict[tuple[str, str], list[dict]], list[Path]]:
    """{(task, method): [results per seed, by seed]} and the folders skipped."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    skipped = []
    for run in runs:
        results = load_run(run, eval_name)
        if results is None:
            skipped.append(run)
            continue
        match = _SEED.search(run.name)
        results["seed_label"] = match.group(1) if match else run.name
        task = results["env_id"].split("/")[-1].removesuffix("-v0")
        groups[(task, _SEED.sub("", run.name))].append(results)
    for members in groups.values():
        members.sort(key=lambda r: r["seed_label"])
    return dict(groups), skipped


def summarize_group(members: list[dict]) -> dict[str, Any]:
    """Mean over seeds of success, entropy, metrics and training time; pooled interval."""
    n = len(members)
    successes = sum(round(m["summary"]["success_rate"] * m["summary"]["episodes"]) for m in members)
    episodes = sum(m["summary"]["episodes"] for m in members)
    metrics = sorted(
        {k for m in members for k in m["summary"] if k.startswith("mean_") and k not in _NOT_METRICS}
    )
    times = [m["train_seconds"] for m in members if m.get("train_seconds") is not None]
    return {
        "seeds": n,
        "success": sum(m["summary"]["success_rate"] for m in members) / n,
        "per_seed": [m["summary"]["success_rate"] for m in members],
        "ci": wilson_interval(successes, episodes),
        "episodes": episodes,
        # No successful episode, no completion order: the summary then has no entropy (0 here).
        "entropy": sum(m["summary"].get("order_entropy", 0.0) for m in members) / n,
        "expert_entropy": members[0].get("expert_order_entropy"),
        "expert_success": members[0].get("expert_success_rate"),
        "metrics": {k[5:]: sum(m["summary"].get(k, 0.0) for m in members) / n for k in metrics},
        "train_seconds": sum(times) / len(times) if times else None,
        "successes": successes,
    }


def compare_groups(a: list[dict], b: list[dict], label_a: str, label_b: str) -> str:
    """`label_a` against `label_b` (the runs of two methods on one task): the pooled success of
    each with its Wilson interval, whether those intervals are disjoint, and the difference with
    Newcombe's 95% interval."""
    sa, sb = summarize_group(a), summarize_group(b)
    d, low, high = difference_interval(sa["successes"], sa["episodes"], sb["successes"], sb["episodes"])
    pooled = [s["successes"] / s["episodes"] for s in (sa, sb)]
    disjoint = sa["ci"][0] > sb["ci"][1] or sb["ci"][0] > sa["ci"][1]
    return (
        f"{label_a} vs {label_b}: pooled success {pooled[0]:.3f} ({sa['ci'][0]:.2f}-{sa['ci'][1]:.2f}, "
        f"{sa['episodes']} episodes) vs {pooled[1]:.3f} ({sb['ci'][0]:.2f}-{sb['ci'][1]:.2f}, "
        f"{sb['episodes']} episodes); pooled intervals {'disjoint' if disjoint else 'overlap'}; "
        f"difference {d:+.3f}, 95% CI {low:+.3f} to {high:+.3f}"
    )


def format_row(task: str, label: str, members: list[dict]) -> str:
    """One markdown row summarising `members` (the runs of one method, one per seed)."""
    s = summarize_group(members)
    fraction = f" ({s['entropy'] / s['expert_entropy']:.0%})" if s["expert_entropy"] else ""
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in s["metrics"].items())
    seconds = f"{s['train_seconds']:.0f} s" if s["train_seconds"] is not None else "-"
    return (
        f"| {task} | {label} | {s['seeds']} x {s['episodes'] // s['seeds']} | {s['success']:.2f} "
        f"({' / '.join(f'{x:.2f}' for x in s['per_seed'])}) | {s['ci'][0]:.2f}-{s['ci'][1]:.2f} | "
        f"{s['entropy']:.3f}{fraction} | {metrics} | {seconds} |"
    )


def format_table(groups: dict[tuple[str, str], list[dict]], per_seed: bool) -> str:
    """The markdown table: per task the expert's row, then one row per method (and per seed)."""
    lines = [
        "| task | method | seeds x episodes | success, mean (per seed) | 95% CI (pooled) | order entropy "
        "(of expert's) | task metrics | train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    experts_shown = set()

    # Per task, runs on the same demonstrations sit together under their expert's row.
    def order(item: tuple[tuple[str, str], list[dict]]) -> tuple:
        (task, method), members = item
        return task, members[0].get("expert_success_rate") or 0.0, method

    for (task, method), members in sorted(groups.items(), key=order):
        first = members[0]
        success, entropy = first.get("expert_success_rate"), first.get("expert_order_entropy")
        # The expert's numbers are those of the demonstrations the runs were trained on: one row
        # per task and dataset (a DART-perturbed collection succeeds less often than the expert).
        if success is not None and (task, success, entropy) not in experts_shown:
            experts_shown.add((task, success, entropy))
            label = "DART-perturbed " if any(m.get("demonstrations_perturb") for m in members) else ""
            entropy_text = f"{entropy:.3f}" if entropy is not None else "-"
            lines.append(
                f"| {task} | expert ({label}training demonstrations) | - | {success:.3f} | - | "
                f"{entropy_text} | - | - |"
            )
        lines.append(format_row(task, method, members))
        if per_seed and len(members) > 1:
            lines += [format_row(task, f"{method}, seed {m['seed_label']}", [m]) for m in members]
    return "\n".join(lines)


def results_report(
    runs: list[Path],
    eval_name: str | None = None,
    per_seed: bool = False,
    compare: tuple[str, str] | None = None,
) -> str:
    """The results table of the run folders `runs` (see the module docstring), its warnings,
    the pooled differences between the methods `compare` names on each task that has both, and
    the folders skipped. Raises FileNotFoundError / ValueError when there is nothing to report."""
    missing = [str(r) for r in runs if not Path(r).is_dir()]
    if missing:
        raise FileNotFoundError(f"not run folders: {', '.join(missing)}")
    groups, skipped = group_runs([Path(r) for r in runs], eval_name)
    if not groups:
        raise ValueError("none of the folders has a results.json")
    lines = [format_table(groups, per_seed), *mixed_settings(groups)]
    if compare:
        a, b = compare
        tasks = sorted({task for task, _ in groups if (task, a) in groups and (task, b) in groups})
        if not tasks:
            raise ValueError(f"compare: no task has runs of both {a!r} and {b!r}")
        lines.append("")
        lines += [f"{task}: " + compare_groups(groups[(task, a)], groups[(task, b)], a, b) for task in tasks]
    if skipped:
        lines.append("\nskipped (no results.json, or an offline run): " + ", ".join(str(r) for r in skipped))
    return "\n".join(lines)
