"""Aggregate finished runs into README's results table (vqbet.results).

python scripts/results_table.py runs/*/* [--eval t0.6] [--per-seed] [--compare vqbet bet]
"""

from vqbet.results import main

if __name__ == "__main__":
    main()
