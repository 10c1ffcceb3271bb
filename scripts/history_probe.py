"""Does a trained policy copy the motion it has just made? Its run's validation windows with the
agent's past positions moved toward the last one (vqbet.evaluation.history): how far the chunks it
samples move, per history factor (0: standing still, 1: as recorded, 2: twice as fast).

    python scripts/history_probe.py runs/pusht/ar-fsq-seed0
    python scripts/history_probe.py runs/pusht/vqbet-fsq-seed1 --factors 0 1 --samples 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vqbet.evaluation.held_out import held_out_windows
from vqbet.evaluation.history import FACTORS, history_sensitivity


def probe(
    run: Path, checkpoint: str = "best", windows: int = 1024, samples: int = 5, factors=FACTORS
) -> dict:
    """`history_sensitivity` of the run folder's checkpoint on its held-out episodes."""
    policy, held_out = held_out_windows(run, checkpoint)
    out = history_sensitivity(policy, held_out, factors, max_windows=windows, samples=samples)
    return {"run": str(run), "checkpoint": checkpoint, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint name under checkpoints/")
    parser.add_argument("--windows", type=int, default=1024, help="validation windows drawn")
    parser.add_argument("--samples", type=int, default=5, help="chunks sampled per window")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), help="history factors")
    args = parser.parse_args()
    try:
        result = probe(args.run, args.checkpoint, args.windows, args.samples, args.factors)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"history_probe: {err}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
