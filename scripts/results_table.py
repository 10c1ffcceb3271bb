"""Aggregate finished runs into the results tables of docs/results.md (vqbet.evaluation.results).

python scripts/results_table.py runs/*/* [--eval t0.6] [--per-seed] [--compare vqbet bet]
"""

import argparse
from pathlib import Path

from vqbet.evaluation import results
from vqbet.pipeline import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="results_table.py",
        description=results.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--eval", dest="eval_name", default=None, help="prefer <run>/eval/NAME/results.json")
    parser.add_argument("--per-seed", action="store_true", help="also list each seed's results file")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="methods to compare on each task")
    args = parser.parse_args(argv)
    print(run_cli(lambda: results.results_report(args.runs, args.eval_name, args.per_seed, args.compare)))


if __name__ == "__main__":
    main()
