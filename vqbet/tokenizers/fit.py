"""Phase 1 for a tokenizer trained by gradient steps: `fit_tokenizer` (AdamW on reconstruction +
quantiser loss, Gumbel temperature annealing, usage curves)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from vqbet.checks import check_ranges
from vqbet.nn.optim import adamw, lr_factor
from vqbet.progress import Progress
from vqbet.quantize import anneal_temperature
from vqbet.tokenizers.base import as_chunks

if TYPE_CHECKING:
    from vqbet.tokenizers.rvq import ActionTokenizer


@dataclass
class TokenizerFitConfig:
    """How `fit_tokenizer` trains."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 256
    """Chunks per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 10% after a 5% warm-up)."""
    weight_decay: float = 1e-4
    """AdamW weight decay on weight matrices only."""
    grad_clip: float = 1.0
    """Gradient-norm clipping; 0 disables."""
    gumbel_start: float = 1.0
    """Initial Gumbel-softmax temperature (used when the quantiser's gradient is "gumbel")."""
    gumbel_end: float = 0.1
    """Final Gumbel-softmax temperature, reached at the last step."""
    seed: int = 0
    """Seeds the batch order and the quantiser's random choices."""
    log_every: int = 50
    """Steps between history records (and tensorboard points)."""

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("steps", "batch_size", "log_every"),
            non_negative=("weight_decay", "grad_clip"),
            positive=("lr", "gumbel_start", "gumbel_end"),
        )


def fit_tokenizer(
    tokenizer: ActionTokenizer,
    chunks: Tensor | np.ndarray,
    config: TokenizerFitConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    log_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train `tokenizer` on action chunks (N, T, A) in raw units; returns the logged history.

    Fits the tokenizer's action normaliser on `chunks` first (unless already fitted), then runs
    AdamW on reconstruction + quantiser loss. Leaves the tokenizer in eval mode on `device`. With
    `log_dir`, writes losses and per-layer perplexity/usage to tensorboard.
    """
    config = config or TokenizerFitConfig()
    data = as_chunks(chunks)
    tokenizer.check_actions(data, name="chunks")
    if data.shape[0] < 2:
        raise ValueError(f"chunks must hold at least 2 chunks, got {data.shape[0]}")
    if not bool(tokenizer.normalizer.fitted):
        tokenizer.normalizer.fit(data)

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    tokenizer.to(device).train()
    optimizer = adamw(tokenizer, config.lr, config.weight_decay)
    warmup = max(1, config.steps // 20)
    writer = _summary_writer(log_dir)
    gumbel = tokenizer.config.gradient == "gumbel"
    history: list[dict[str, float]] = []
    batch_size = min(config.batch_size, data.shape[0])
    started = time.perf_counter()
    bar = Progress("tokenizer", config.steps, enabled=progress)
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config.steps, warmup)
        if gumbel:
            tokenizer.quantizer.set_temperature(
                anneal_temperature(step, start=config.gumbel_start, end=config.gumbel_end, steps=config.steps)
            )
        idx = torch.randint(data.shape[0], (batch_size,), generator=generator)
        batch = data[idx].to(device, non_blocking=True)
        out = tokenizer(batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), config.grad_clip)
        optimizer.step()
        bar.update()

        if step % config.log_every == 0 or step == config.steps - 1:
            record = {
                "step": float(step),
                "loss": out.loss.item(),
                "reconstruction_loss": out.reconstruction_loss.item(),
                "quantizer_loss": out.quantizer_loss.item(),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
                **out.usage.as_dict(),
            }
            history.append(record)
            used = "/".join(f"{v:.0%}" for k, v in record.items() if k.startswith("used_fraction/"))
            bar.log(
                step + 1, {"recon": record["reconstruction_loss"], "lr": record["lr"], "codes used": used}
            )
            if writer is not None:
                for key, value in record.items():
                    if key != "step":
                        writer.add_scalar(f"tokenizer/{key}", value, step)
    bar.close()
    if writer is not None:
        writer.close()
    optimizer.zero_grad(set_to_none=True)
    tokenizer.eval()
    return history


def _summary_writer(log_dir: str | os.PathLike | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
