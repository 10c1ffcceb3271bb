"""A training run's checkpoint with the validation episodes its training held out: what the
diagnostics of trained policies (token accuracy, history sensitivity) are measured on."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from vqbet.data import TrajectoryWindows, load_dataset, split_episodes
from vqbet.policies import Policy, load_policy
from vqbet.policies.acting import batch_to


def held_out_windows(run: Path, checkpoint: str = "best") -> tuple[Policy, TrajectoryWindows]:
    """(the run folder's `checkpoints/<checkpoint>` policy, the windows of the validation episodes
    its training held out: the same dataset, seed and val_fraction as in its config.yaml)."""
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
    windows = TrajectoryWindows(
        data,
        policy.config.obs_window,
        policy.config.action_chunk,
        episodes=val,
        cameras=policy.config.vision.cameras,
    )
    return policy, windows


def draw_batch(windows: TrajectoryWindows, max_windows: int, seed: int, device: torch.device) -> dict:
    """Up to `max_windows` of `windows`, drawn with `seed` (in dataset order), collated into one
    batch on `device`: the windows a diagnostic measures."""
    chosen = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[:max_windows]
    batch = torch.utils.data.default_collate([windows[int(i)] for i in sorted(chosen.tolist())])
    return batch_to(batch, device)
