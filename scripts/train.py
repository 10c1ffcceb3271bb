"""Train VQ-BeT end to end: collect demonstrations if missing, fit the tokenizer, train the policy.

python scripts/train.py                          # default task
python scripts/train.py task=blockpush seed=1
python scripts/train.py experiment=smoke         # seconds, for CI
python scripts/train.py ... resume=true          # continue exactly from run_dir/checkpoints/last
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from collect import collect  # noqa: E402

from vqbet import ActionTokenizer, TokenizerConfig, TokenizerFitConfig, fit_tokenizer  # noqa: E402
from vqbet.data import TrajectoryWindows, read_hdf5, split_episodes  # noqa: E402
from vqbet.policy import VQBeTConfig, VQBeTPolicy  # noqa: E402
from vqbet.train_policy import PolicyTrainConfig, train_policy  # noqa: E402


def absolute(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def build_policy(cfg: DictConfig) -> VQBeTPolicy:
    """Tokenizer + policy from the config; every dimension comes from the task."""
    task = cfg.task
    tok_cfg = TokenizerConfig(
        action_dim=task.action_dim,
        chunk_size=task.action_chunk,
        **OmegaConf.to_container(cfg.tokenizer.model),
    )
    policy_fields: dict[str, Any] = OmegaConf.to_container(cfg.policy)
    policy_fields.pop("name", None)
    config = VQBeTConfig(
        obs_dim=task.obs_dim,
        action_dim=task.action_dim,
        obs_window=task.obs_window,
        action_chunk=task.action_chunk,
        **policy_fields,
    )
    return VQBeTPolicy(config, ActionTokenizer(tok_cfg))


def make_logger(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
    return writer, lambda name, value, step: writer.add_scalar(name, value, step)


def run(cfg: DictConfig) -> dict[str, Any]:
    run_dir = absolute(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run folder: {run_dir}")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    dataset = absolute(cfg.task.dataset)
    if not dataset.is_file():
        print(f"{dataset} is missing: collecting {cfg.collect.episodes} expert episodes first")
        collect(cfg.task.env_id, int(cfg.collect.episodes), dataset, seed=0, workers=int(cfg.collect.workers))
    data = read_hdf5(dataset)
    if data.obs.shape[1] != cfg.task.obs_dim or data.action.shape[1] != cfg.task.action_dim:
        raise ValueError(
            f"{dataset}: obs/action dims {data.obs.shape[1]}/{data.action.shape[1]} do not match task "
            f"{cfg.task.name} ({cfg.task.obs_dim}/{cfg.task.action_dim})"
        )
    train_eps, val_eps = split_episodes(data.num_episodes, float(cfg.data.val_fraction), seed=int(cfg.seed))
    windows = dict(obs_window=int(cfg.task.obs_window), action_chunk=int(cfg.task.action_chunk))
    train_set = TrajectoryWindows(data, episodes=train_eps, **windows)
    val_set = TrajectoryWindows(data, episodes=val_eps, **windows) if len(val_eps) else None

    torch.manual_seed(int(cfg.seed))
    policy = build_policy(cfg)
    writer, log = make_logger(run_dir)
    resuming = bool(cfg.resume) and (run_dir / "checkpoints" / "last").is_dir()
    if not resuming:
        print(f"phase 1: tokenizer on {len(train_set)} action chunks")
        fit = TokenizerFitConfig(seed=int(cfg.seed), **OmegaConf.to_container(cfg.tokenizer.fit))
        history = fit_tokenizer(
            policy.tokenizer, train_set.action_chunks(), fit, log_dir=run_dir / "tensorboard"
        )
        last = history[-1]
        print(
            f"tokenizer: reconstruction {last['reconstruction_loss']:.4f}, codes used "
            + ", ".join(
                f"{100 * last[f'used_fraction/{i}']:.0f}%" for i in range(policy.tokenizer.num_layers)
            )
        )
        policy.obs_normalizer.fit(torch.from_numpy(data.obs[train_set.steps()]))
    params = sum(p.numel() for p in policy.parameters())
    print(f"phase 2: policy on {len(train_set)} windows ({params:,} params)")
    train_cfg = PolicyTrainConfig(seed=int(cfg.seed), **OmegaConf.to_container(cfg.train))
    state = train_policy(policy, train_set, val_set, train_cfg, run_dir, resume=bool(cfg.resume), log=log)
    writer.close()
    print(f"done: checkpoints in {run_dir / 'checkpoints'} (best val loss {state['best_val']:.4f})")
    return state


@hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
