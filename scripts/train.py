"""Train a policy end to end: collect demonstrations if missing, phase 1 (tokenizer / bins /
normaliser), phase 2 (policy), then evaluate the best checkpoint and write a report.

    python scripts/train.py                          # the default: VQ-BeT on the default task
    python scripts/train.py task=blockpush policy=mlp seed=1
    python scripts/train.py experiment=smoke         # seconds, for CI
    python scripts/train.py ... resume=true          # continue exactly from run_dir/checkpoints/last
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import torch
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from collect import collect  # noqa: E402
from eval import EVAL_SEED, absolute, evaluate_and_report  # noqa: E402

import envs  # noqa: E402, F401  (registers the tasks)
from vqbet import ActionTokenizer, TokenizerConfig, TokenizerFitConfig, fit_tokenizer  # noqa: E402
from vqbet.baselines import MLPConfig, MLPPolicy, load_policy, make_bet  # noqa: E402
from vqbet.data import TrajectoryWindows, read_hdf5, split_episodes  # noqa: E402
from vqbet.evaluate import evaluate  # noqa: E402
from vqbet.policy import VQBeTConfig, VQBeTPolicy  # noqa: E402
from vqbet.report import plot_curves  # noqa: E402
from vqbet.train_policy import (  # noqa: E402
    PolicyTrainConfig,
    compile_network,
    resolve_device,
    setup_distributed,
    train_policy,
)


def build_policy(cfg: DictConfig) -> torch.nn.Module:
    """The policy named by cfg.policy.name; every dimension comes from the task."""
    task = cfg.task
    fields: dict[str, Any] = OmegaConf.to_container(cfg.policy, resolve=True)
    name = fields.pop("name")
    dims = dict(
        obs_dim=task.obs_dim,
        action_dim=task.action_dim,
        obs_window=task.obs_window,
        action_chunk=task.action_chunk,
        action_relative_to=list(task.get("action_relative_to", [])),
    )
    if name == "mlp":
        return MLPPolicy(MLPConfig(**dims, **fields))
    if name == "bet":
        num_bins = fields.pop("num_bins")
        return make_bet(VQBeTConfig(**dims, **fields), num_bins=num_bins)
    if name == "vqbet":
        tok_cfg = TokenizerConfig(
            action_dim=task.action_dim,
            chunk_size=task.action_chunk,
            **OmegaConf.to_container(cfg.tokenizer.model, resolve=True),
        )
        return VQBeTPolicy(VQBeTConfig(**dims, **fields), ActionTokenizer(tok_cfg))
    raise ValueError(f"policy.name must be vqbet, bet or mlp, got {name!r}")


def phase_one(policy: torch.nn.Module, cfg: DictConfig, windows: TrajectoryWindows, run_dir: Path) -> None:
    """Fit what the policy learns before its own training: normalisers, tokenizer or bins."""
    obs = torch.from_numpy(windows.data.obs[windows.steps()])
    policy.obs_normalizer.fit(obs)
    chunks = windows.action_chunks(policy.config.action_relative_to)
    if isinstance(policy, MLPPolicy):
        policy.action_normalizer.fit(torch.from_numpy(chunks).reshape(-1, chunks.shape[-1]))
        return
    print(f"phase 1: tokenizer on {len(chunks)} action chunks")
    if isinstance(policy.tokenizer, ActionTokenizer):
        fit_fields = OmegaConf.to_container(cfg.tokenizer.fit, resolve=True)
        fit = TokenizerFitConfig(seed=int(cfg.seed), **fit_fields)
        history = fit_tokenizer(policy.tokenizer, chunks, fit, log_dir=run_dir / "tensorboard")
        last = history[-1]
        usage = sorted(k for k in last if k.startswith("used_fraction/"))
        plot_curves(
            history, usage, run_dir / "codebook_usage.png", "tokenizer: fraction of codes used, per layer"
        )
    else:
        last = policy.tokenizer.fit(chunks, seed=int(cfg.seed))
    used = ", ".join(f"{100 * v:.0f}%" for k, v in last.items() if k.startswith("used_fraction"))
    print(f"tokenizer: reconstruction {last['reconstruction_loss']:.4f}, codes used {used}")


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    # Under torchrun: join the process group first (gloo on CPU, NCCL on CUDA); rank 0 collects,
    # logs, evaluates and writes; every rank fits the same phase 1 from the same seed.
    rank, world, _ = setup_distributed(resolve_device(str(cfg.train.device)))
    run_dir = absolute(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = absolute(cfg.task.dataset)
    if rank == 0:
        print(f"run folder: {run_dir} ({world} process{'es' if world > 1 else ''})")
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        if not dataset.is_file():
            print(f"{dataset} is missing: collecting {cfg.collect.episodes} expert episodes first")
            collect(
                cfg.task.env_id,
                int(cfg.collect.episodes),
                dataset,
                seed=0,
                workers=int(cfg.collect.workers),
                perturb=float(cfg.collect.perturb),
                perturb_hold=int(cfg.collect.perturb_hold),
            )
    if world > 1:
        torch.distributed.barrier()
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
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if rank == 0 else None
    if not (bool(cfg.resume) and (run_dir / "checkpoints" / "last").is_dir()):
        phase_one(policy, cfg, train_set, run_dir)
    params = sum(p.numel() for p in policy.parameters())
    print(f"phase 2: {cfg.policy.name} on {len(train_set)} windows ({params:,} params)")

    def make_env(**kwargs: Any) -> gym.Env:
        return gym.make(cfg.task.env_id, disable_env_checker=True, **kwargs)

    def on_eval(acting: torch.nn.Module, step: int) -> dict[str, float]:
        if int(cfg.eval.during_training) <= 0:
            return {}
        was_training = acting.training
        acting.eval()
        result = evaluate(
            acting,
            make_env,
            int(cfg.eval.during_training),
            EVAL_SEED,
            num_envs=int(cfg.eval.num_envs),
            progress=False,
        )
        acting.train(was_training)
        return {"success_rate": result["summary"]["success_rate"]}

    train_cfg = PolicyTrainConfig(seed=int(cfg.seed), **OmegaConf.to_container(cfg.train, resolve=True))
    state = train_policy(
        policy,
        train_set,
        val_set,
        train_cfg,
        run_dir,
        resume=bool(cfg.resume),
        log=(lambda k, v, s: writer.add_scalar(k, v, s)) if writer is not None else None,
        on_eval=on_eval,
    )
    if writer is None:  # ranks other than 0 are done: rank 0 evaluates and reports
        return {}
    writer.close()
    train_seconds = time.perf_counter() - started

    best = load_policy(
        run_dir / "checkpoints" / "best", obs_dim=cfg.task.obs_dim, action_dim=cfg.task.action_dim
    ).to(resolve_device(str(cfg.train.device)))  # the simulator stays on the CPU
    if cfg.train.compile:
        compile_network(best)
    print(f"evaluating {run_dir / 'checkpoints' / 'best'} on {cfg.eval.episodes} episodes")
    torch.manual_seed(int(cfg.seed))
    plot_curves(state["history"], ["loss", "val_loss", "success_rate"], run_dir / "curves.png", "training")
    extra = {
        "seed": int(cfg.seed),
        "train_seconds": train_seconds,
        "device": str(resolve_device(str(cfg.train.device))),
        "parameters": params,
        "best_step": state.get("best_step"),
    }
    results = evaluate_and_report(
        best, cfg.task, cfg.eval, run_dir, cfg.policy.name, dict(data.attrs), extra, started
    )
    print(f"{time.perf_counter() - started:.0f} s in all")
    return results


@hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
