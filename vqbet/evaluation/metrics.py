"""Metrics over episode records: success with Wilson intervals, completion-order entropy, means."""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Hashable, Sequence
from typing import Any


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> tuple[float, float, float]:
    """(p_a - p_b, low, high): the difference of two binomial proportions with Newcombe's 95%
    hybrid score interval (from the two Wilson intervals; sound at rates near 0 or 1 and at
    a few hundred trials, where the plain normal interval is not)."""
    pa, pb = successes_a / max(trials_a, 1), successes_b / max(trials_b, 1)
    la, ua = wilson_interval(successes_a, trials_a)
    lb, ub = wilson_interval(successes_b, trials_b)
    d = pa - pb
    return d, d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


def order_entropy(orders: Sequence[Hashable]) -> float:
    """Entropy (nats) of the empirical distribution of completion orders (VQ-BeT's behaviour
    entropy); 0 for no orders."""
    if not orders:
        return 0.0
    counts = collections.Counter(orders)
    total = sum(counts.values())
    return max(0.0, float(-sum(c / total * math.log(c / total) for c in counts.values())))  # never -0.0


def _hashable(value: Any) -> Hashable:
    """Nested lists (orders of (block, target) pairs) -> nested tuples."""
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def summarize(episodes: Sequence[dict[str, Any]], num_modes: int | None = None) -> dict[str, Any]:
    """Aggregate per-episode records ({"success", "length", "order"?, "p1".., "coverage"..}) into
    success rate + 95% interval, mean of every numeric/boolean task metric, and order entropy over
    successful episodes (with its fraction of the uniform maximum when `num_modes` is given)."""
    n = len(episodes)
    wins = sum(bool(e["success"]) for e in episodes)
    low, high = wilson_interval(wins, n)
    out: dict[str, Any] = {"episodes": n, "success_rate": wins / n if n else 0.0, "success_ci95": [low, high]}
    numeric = sorted(
        {k for e in episodes for k, v in e.items() if isinstance(v, (bool, int, float)) and k != "seed"}
    )
    for key in numeric:
        values = [float(e[key]) for e in episodes if key in e]
        out[f"mean_{key}"] = sum(values) / len(values)
    lengths = [e["length"] for e in episodes if e.get("success") and "length" in e]
    if lengths:  # how fast a policy succeeds (a slow one times out where a longer limit would not)
        out["median_success_length"] = float(statistics.median(lengths))
    orders = [_hashable(e["order"]) for e in episodes if e.get("success") and "order" in e]
    if orders:
        out["order_entropy"] = order_entropy(orders)
        out["distinct_orders"] = len(set(orders))
        if num_modes:
            out["order_entropy_fraction"] = out["order_entropy"] / math.log(num_modes)
    return out
