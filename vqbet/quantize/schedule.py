"""Temperature schedule for the Gumbel-softmax relaxation."""

from __future__ import annotations

import math


def anneal_temperature(step: int, *, start: float = 1.0, end: float = 0.1, steps: int = 1000) -> float:
    """Exponential decay from `start` (step 0) to `end` (step >= `steps`), as in DALL-E's dVAE.

    The fitting loop calls `quantizer.set_temperature(anneal_temperature(step, ...))` each step.
    """
    if start <= 0 or end <= 0 or steps < 1:
        raise ValueError(
            f"anneal_temperature: need start, end > 0 and steps >= 1, got {start}, {end}, {steps}"
        )
    frac = min(max(step, 0), steps) / steps
    return float(math.exp(math.log(start) + frac * (math.log(end) - math.log(start))))
