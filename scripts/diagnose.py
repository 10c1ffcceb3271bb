"""Why a trained policy acts as it does, measured on the validation episodes its run held out
(the same dataset, seed and val_fraction as in the run's config.yaml):

- `tokens`: per-position token accuracy and chunk errors of a token policy (`ar` or `vqbet`):
  teacher-forced, greedy and sampled at its acting temperature (vqbet.evaluation.tokens);
- `history`: whether it copies the motion it has just made: how far its sampled chunks move when
  the agent's past positions in the window are stilled, slowed or sped up (vqbet.evaluation.history).

    python scripts/diagnose.py tokens runs/pusht/ar-fast-seed0
    python scripts/diagnose.py tokens runs/pusht/vqbet-fsq-seed1 --checkpoint last --windows 4096 --samples 20
    python scripts/diagnose.py history runs/pusht/ar-fsq-seed0 --factors 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vqbet.evaluation.held_out import held_out_windows
from vqbet.evaluation.history import FACTORS, history_sensitivity
from vqbet.evaluation.tokens import token_diagnostics

SAMPLES = {"tokens": 10, "history": 5}
"""Chunks sampled per window by default."""


def diagnose(
    kind: str,
    run: Path,
    checkpoint: str = "best",
    windows: int = 1024,
    samples: int | None = None,
    factors: list[float] | None = None,
) -> dict[str, Any]:
    """The `kind` ("tokens" or "history") diagnostics of the run folder's checkpoint."""
    if kind not in SAMPLES:
        raise ValueError(f"kind must be one of {sorted(SAMPLES)}, got {kind!r}")
    policy, held_out = held_out_windows(run, checkpoint)
    samples = SAMPLES[kind] if samples is None else samples
    if kind == "tokens":
        out = token_diagnostics(policy, held_out, windows, samples=samples)
    else:
        out = history_sensitivity(policy, held_out, factors or FACTORS, max_windows=windows, samples=samples)
    return {"run": str(run), "checkpoint": checkpoint, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(SAMPLES), help="which diagnostics")
    parser.add_argument("run", type=Path, help="a training run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint name under checkpoints/")
    parser.add_argument("--windows", type=int, default=1024, help="validation windows drawn")
    parser.add_argument("--samples", type=int, help="chunks sampled per window (tokens 10, history 5)")
    parser.add_argument("--factors", type=float, nargs="+", help=f"history factors (default {list(FACTORS)})")
    args = parser.parse_args()
    try:
        result = diagnose(args.kind, args.run, args.checkpoint, args.windows, args.samples, args.factors)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"diagnose: {err}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
