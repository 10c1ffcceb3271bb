"""Run reports: tiled rollout videos, plots and a markdown summary (matplotlib / imageio are
imported only when used)."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from vqbet.io.atomic import write_text
from vqbet.io.run_dir import RunDir


def tile(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """Frames (H, W, 3) -> one grid image, row-major, blank cells black."""
    h, w, _ = frames[0].shape
    rows = -(-len(frames) // columns)
    grid = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    return grid


def stack_observations(observations: list[Any]) -> Any:
    """One observation per env -> a batch: arrays stacked, or dicts (cameras) stacked per key."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


@torch.no_grad()
def record_video(
    policy: Any,
    make_env: Callable[..., gym.Env],
    episodes: int,
    seed: int,
    path: str | os.PathLike,
    fps: int = 20,
) -> Path:
    """Roll out `episodes` episodes side by side (seeds seed..) and write one tiled mp4."""
    import imageio.v2 as imageio

    envs = [make_env(render_mode="rgb_array") for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    done = np.zeros(episodes, dtype=bool)
    last = [env.render() for env in envs]
    policy.reset()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = int(np.ceil(np.sqrt(episodes)))
    with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
        writer.append_data(tile(last, columns))
        while not done.all():
            action = policy.select_action(stack_observations(obs))
            action = action.cpu().numpy() if isinstance(action, torch.Tensor) else np.asarray(action)
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                obs[i], _, terminated, truncated, _ = env.step(action[i])
                last[i] = env.render()
                done[i] = terminated or truncated
            writer.append_data(tile(last, columns))
    for env in envs:
        env.close()
    return path


def plot_orders(
    policy_orders: list, expert_hist: dict[str, int], path: str | os.PathLike, title: str
) -> Path:
    """Bar chart of completion-order frequencies, policy vs expert demonstrations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy_hist = collections.Counter(json.dumps(o) for o in policy_orders)
    keys = sorted(set(expert_hist) | set(policy_hist), key=lambda k: -expert_hist.get(k, 0))
    e_total = max(1, sum(expert_hist.values()))
    p_total = max(1, sum(policy_hist.values()))
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(keys)), 3.5))
    ax.bar(x - 0.2, [expert_hist.get(k, 0) / e_total for k in keys], 0.4, label="expert")
    ax.bar(x + 0.2, [policy_hist.get(k, 0) / p_total for k in keys], 0.4, label="policy")
    ax.set_xticks(x, keys, rotation=90, fontsize=6)
    ax.set_ylabel("fraction of successes")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_curves(history: list[dict[str, Any]], keys: list[str], path: str | os.PathLike, title: str) -> Path:
    """Training curves of the given history keys against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), label=key, marker="o" if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _number(value: float | None, digits: int = 2) -> str:
    """A metric for the report; "unknown" when absent (e.g. a run copied without its dataset)."""
    return "unknown" if value is None else f"{value:.{digits}f}"


def write_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """results.json and a short report.md in `run_dir`."""
    write_text(RunDir.of(run_dir).results, json.dumps(results, indent=2, default=str))
    s = results["summary"]
    low, high = s["success_ci95"]
    lines = [
        f"# {results['policy']} on {results['env_id']}",
        "",
        f"- success: **{s['success_rate']:.2f}** (95% CI {low:.2f}-{high:.2f}) over {s['episodes']} episodes "
        f"(seeds {results['eval_seed']}..{results['eval_seed'] + s['episodes'] - 1})",
        f"- expert success in the demonstrations: {_number(results.get('expert_success_rate'))}"
        + (
            f" (DART-perturbed collection, noise std {results['demonstrations_perturb']}: the unperturbed "
            "expert succeeds more often)"
            if results.get("demonstrations_perturb")
            else ""
        ),
    ]
    if "order_entropy" in s:
        lines.append(
            f"- completion-order entropy: {s['order_entropy']:.3f} nats "
            f"({s['distinct_orders']} distinct orders); "
            f"expert {_number(results.get('expert_order_entropy'), 3)}"
        )
    for key, value in s.items():
        if key.startswith("mean_") and key not in ("mean_success",):
            lines.append(f"- {key[5:]}: {value:.3f}")
    if "decoding" in results:
        d = results["decoding"]
        lines.append(
            f"- token sequences that did not decode: {d['invalid']} of {d['chunks'] + d['resampled']} "
            f"draws ({100 * d['invalid_rate']:.1f}%); {d['resampled']} drawn again, {d['fallback']} "
            "acted on the previous chunk's remainder"
        )
    if "train_seconds" in results:
        lines.append(
            f"- training wall time: {results['train_seconds']:.0f} s ({results['device']}); "
            f"policy parameters: {results['parameters']:,}"
        )
    files = sorted(p.name for p in run_dir.iterdir() if p.suffix in (".json", ".png", ".mp4"))
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in files) + "."]
    return write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def write_offline_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """results.json and report.md of a run judged on held-out demonstrations (no simulator)."""
    write_text(RunDir.of(run_dir).results, json.dumps(results, indent=2, default=str))
    m = results["offline"]
    samples = m["samples"]
    lines = [
        f"# {results['policy']} on {results['dataset']} (offline: no simulator)",
        "",
        f"- windows evaluated: {m['windows']}, from {results['evaluated_on']}",
        f"- greedy chunk: MSE {m['greedy_mse']:.5f}, MAE {m['greedy_mae']:.5f}, "
        f"normalised MSE {m['greedy_nmse']:.4f}",
        f"- best of {samples} sampled chunks: MSE {m[f'best_of_{samples}_mse']:.5f}, "
        f"normalised MSE {m[f'best_of_{samples}_nmse']:.4f}",
    ]
    accuracy = [f"{m[k]:.3f}" for k in sorted(m) if k.startswith("code_accuracy/")]
    if accuracy:
        lines.append(f"- code accuracy per layer: {' / '.join(accuracy)}")
    if "reconstruction_mse" in m:
        used = " / ".join(f"{m[k]:.0%}" for k in sorted(m) if k.startswith("used_fraction/"))
        lines.append(
            f"- tokenizer: reconstruction MSE {m['reconstruction_mse']:.5f} (normalised), codes used {used}"
        )
    if "train_seconds" in results:
        lines.append(f"- training wall time: {results['train_seconds']:.0f} s ({results['device']})")
    files = sorted(p.name for p in run_dir.iterdir() if p.suffix in (".json", ".png"))
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in files) + "."]
    return write_text(run_dir / "report.md", "\n".join(lines) + "\n")
