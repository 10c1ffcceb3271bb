"""Per-position token accuracy and chunk errors of a trained token policy (`ar` or `vqbet`) on its
run's validation episodes (vqbet.evaluation.tokens): where a token policy goes wrong.

    python scripts/token_accuracy.py runs/pusht/ar-fast-seed0
    python scripts/token_accuracy.py runs/pusht/vqbet-fsq-seed1 --checkpoint last --windows 4096 --samples 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from vqbet.data import TrajectoryWindows, load_dataset, split_episodes
from vqbet.evaluation.tokens import token_diagnostics
from vqbet.policies import load_policy


def diagnose(run: Path, checkpoint: str = "best", windows: int = 1024, samples: int = 10) -> dict:
    """The run folder's checkpoint on the validation episodes its training held out (the same
    dataset, seed and val_fraction as in its config.yaml), sampled at its acting temperature."""
    config_file = run / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: not a training run folder (no config.yaml)")
    cfg = yaml.safe_load(config_file.read_text())
    policy = load_policy(run / "checkpoints" / checkpoint)
    data = load_dataset(cfg["task"]["dataset"])
    _, val = split_episodes(data.num_episodes, cfg["data"]["val_fraction"], seed=cfg["seed"])
    if not len(val):
        raise ValueError(
            f"{config_file}: data.val_fraction={cfg['data']['val_fraction']} held no episode out"
        )
    held_out = TrajectoryWindows(
        data,
        policy.config.obs_window,
        policy.config.action_chunk,
        episodes=val,
        cameras=policy.config.vision.cameras,
    )
    diagnostics = token_diagnostics(policy, held_out, windows, samples=samples)
    return {"run": str(run), "checkpoint": checkpoint, **diagnostics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint name under checkpoints/")
    parser.add_argument("--windows", type=int, default=1024, help="validation windows drawn")
    parser.add_argument("--samples", type=int, default=10, help="chunks sampled per window")
    args = parser.parse_args()
    try:
        print(json.dumps(diagnose(args.run, args.checkpoint, args.windows, args.samples), indent=1))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"token_accuracy: {err}")


if __name__ == "__main__":
    main()
