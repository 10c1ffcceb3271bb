"""Phase 2: train the policy on windows with the tokenizer frozen; checkpoints and exact resume."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from vqbet.checks import check_ranges
from vqbet.io.atomic import clean_stale, write_text
from vqbet.io.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_json, read_tensors, write_folder
from vqbet.io.run_dir import RunDir
from vqbet.nn.optim import adamw, lr_factor
from vqbet.policies.acting import batch_to, state_of
from vqbet.policies.base import Policy
from vqbet.progress import Progress
from vqbet.training.device import compile_network, resolve_device, setup_distributed, training_autocast
from vqbet.training.state import (
    STATE_JSON,
    STATE_TENSORS,
    optimizer_from_files,
    optimizer_to_files,
    restore_rng,
    rng_tensors,
)


@dataclass
class PolicyTrainConfig:
    """How `train_policy` trains."""

    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 256
    """Windows per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay, on weight matrices only."""
    grad_clip: float = 1.0
    """Gradient-norm clipping; 0 disables."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights used for acting and checkpoints; 0 = off."""
    eval_every: int = 500
    """Steps between validation losses (and best-checkpoint updates)."""
    checkpoint_every: int = 500
    """Steps between `last` checkpoints."""
    log_every: int = 50
    """Steps between history records / tensorboard points."""
    num_workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seeds the batch order, initialisation and dropout."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    amp: bool = True
    """bf16 autocast of the forward pass on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX;
    elsewhere float32, said once at the start). Weights, gradients, optimizer state and the loss
    stay float32 (speed: docs/benchmarks.md)."""
    compile: bool = False
    """torch.compile the policy's network (transformer or MLP) in place: a compile at the start,
    then faster steps where the compiled kernels are faster (docs/benchmarks.md)."""

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("steps", "batch_size", "eval_every", "checkpoint_every", "log_every"),
            non_negative=("warmup_steps", "weight_decay", "grad_clip", "num_workers"),
            positive=("lr",),
        )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"PolicyTrainConfig: ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", str(self.device))):
            raise ValueError(
                f"PolicyTrainConfig: device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )


class StepBatchSampler(Sampler[list[int]]):
    """Batches for steps [start, stop): each epoch is a permutation seeded by (seed, epoch), so the
    batch of any step can be recomputed and training resumes exactly where it stopped. `batch_size`
    is the global batch; with `world` processes, rank r gets its 1/world share of it."""

    def __init__(
        self, size: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ) -> None:
        if size < 1:
            raise ValueError("StepBatchSampler: empty dataset")
        self.size, self.batch_size = size, min(batch_size, size)
        if self.batch_size % world:
            raise ValueError(f"the global batch ({self.batch_size}) must divide among {world} processes")
        self.seed, self.start, self.stop = seed, start, stop
        self.rank, self.world = rank, world
        self.per_epoch = size // self.batch_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for step in range(self.start, self.stop):
            if step // self.per_epoch != epoch:
                epoch = step // self.per_epoch
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm = torch.randperm(self.size, generator=g)
            i = (step % self.per_epoch) * self.batch_size
            # Under DDP each rank takes every world-th window of the same global batch.
            yield perm[i : i + self.batch_size][self.rank :: self.world].tolist()


def _size(batch: dict[str, Any]) -> int:
    """Windows in a batch (the state's first dimension)."""
    return int(state_of(batch["obs"]).shape[0])


@torch.no_grad()
def validation_loss(policy: torch.nn.Module, data: Dataset, batch_size: int, device: torch.device) -> float:
    """Mean loss over the whole validation set, in eval mode, in a fixed order."""
    was_training = policy.training
    policy.eval()
    total, count = 0.0, 0
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        loss, _ = policy(batch_to(batch, device))
        total += loss.item() * _size(batch)
        count += _size(batch)
    policy.train(was_training)
    return total / max(count, 1)


def save_checkpoint(
    folder: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    acting: Policy,
) -> None:
    """One atomic folder: acting weights (EMA when on) + raw weights, optimizer, RNG and step."""
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    raw = {f"raw.{k}": v for k, v in policy.state_dict().items()}
    write_folder(
        folder,
        json_files={
            CONFIG_FILE: acting.meta(),
            STATE_JSON: {**state, "optimizer": opt_meta},
            **acting.extra_files(),
        },
        tensor_files={
            WEIGHTS_FILE: acting.state_dict(),
            STATE_TENSORS: {**opt_tensors, **raw, **rng_tensors()},
        },
    )


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became non-finite; no update was applied at that step."""


def _diverged(step: int, loss: float, norm: float, last: Path, config: PolicyTrainConfig) -> str:
    saved = "no checkpoint was saved before it"
    if (last / STATE_JSON).is_file():
        held = read_json(last, STATE_JSON).get("step")
        saved = f"{last} holds step {held} with finite weights (resume=true continues from it)"
    return (
        f"training diverged at step {step}: loss {loss}, gradient norm {norm}. That step was not "
        f"applied and nothing was saved from it; {saved}. Lower train.lr (now {config.lr}) or clip "
        f"gradients (train.grad_clip, now {config.grad_clip})."
    )


def _headline(metrics: dict[str, float]) -> dict[str, Any]:
    """The metrics a progress line shows: loss, lr, code accuracy per layer, samples/s."""
    shown: dict[str, Any] = {"loss": metrics["loss"], "lr": metrics["lr"]}
    accuracy = [v for k, v in metrics.items() if k.startswith("code_accuracy/")]
    if accuracy:
        shown["code acc"] = "/".join(f"{a:.2f}" for a in accuracy)
    shown["samples/s"] = metrics["samples_per_s"]
    return shown


def train_policy(
    policy: Policy,
    train_set: Dataset,
    val_set: Dataset | None,
    config: PolicyTrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str, float, int], None] | None = None,
    on_eval: Callable[[Policy, int], dict[str, float]] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Phase 2: train `policy` (after its `fit_statistics`, which this freezes) and write
    `run_dir/checkpoints/{last,best}`.

    With `resume`, continues from `last`: weights, optimizer, schedule, RNG and batch order, so the
    result equals an uninterrupted run. `log(name, value, step)` receives scalars (e.g. tensorboard);
    `on_eval(acting_policy, step)` may add metrics (e.g. rollouts) at every evaluation.
    The returned state's "seconds" is the run's wall time from `started` (a `time.perf_counter()`
    value; the call by default), summed over the segments a resumed run took.
    """
    started = time.perf_counter() if started is None else started
    rank, world, device = setup_distributed(resolve_device(config.device))
    main_process = rank == 0
    run = RunDir.of(run_dir)
    last, best = run.last, run.best
    if main_process:  # a kill mid-swap or mid-write in an earlier run left these
        for folder in (last, best):
            clean_stale(folder)
    if world > 1:
        dist.barrier()
    policy.freeze_statistics()
    policy.to(device).train()
    if config.compile:
        compile_network(policy)
    optimizer = adamw(policy, config.lr, config.weight_decay)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    # DDP averages gradients over ranks (its buffer broadcast is cheap: codebooks and statistics).
    model = (
        DistributedDataParallel(policy, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else policy
    )
    ema = copy.deepcopy(policy).eval() if config.ema_decay > 0 else None
    state: dict[str, Any] = {"step": 0, "best_val": math.inf, "history": []}
    if resume and (last / STATE_JSON).is_file():
        state = read_json(last, STATE_JSON)
        tensors = read_tensors(last, STATE_TENSORS)
        policy.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
        policy.load_extra(last)
        optimizer_from_files(optimizer, tensors, state.pop("optimizer"))
        if ema is not None:
            ema.load_state_dict(read_tensors(last, WEIGHTS_FILE))
            ema.load_extra(last)
        restore_rng(tensors)
    elif resume:
        print(f"resume: no checkpoint in {last}; starting from step 0")
        torch.manual_seed(config.seed)
    else:
        torch.manual_seed(config.seed)
    start = int(state["step"])
    # Time spent before the checkpoint this segment resumed from (steps redone after it count once).
    earlier = float(state.get("seconds", 0.0))
    sampler = StepBatchSampler(
        len(train_set), config.batch_size, config.seed, start, config.steps, rank, world
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # Its own generator: a DataLoader draws worker seeds from the global RNG otherwise, which
        # would shift the dropout stream of a resumed run.
        generator=torch.Generator().manual_seed(config.seed + start),
    )
    autocast = training_autocast(device, config.amp, say=main_process and progress)
    bar = Progress("policy", config.steps, initial=start, enabled=progress and main_process)
    seen, tick = 0, time.perf_counter()
    step = start
    for step, batch in enumerate(loader, start=start + 1):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step - 1, config.steps, config.warmup_steps)
        with autocast:
            loss, metrics = model(batch_to(batch, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The norm of the (all-reduced) gradients is the same on every rank, so all ranks stop at
        # the same step, before a non-finite update reaches the weights or any checkpoint.
        norm = torch.nn.utils.clip_grad_norm_(
            trainable, config.grad_clip if config.grad_clip > 0 else math.inf
        )
        if not math.isfinite(norm.item()) or (world == 1 and not math.isfinite(metrics["loss"])):
            raise TrainingDiverged(_diverged(step, metrics["loss"], norm.item(), last, config))
        optimizer.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), policy.parameters(), strict=True):
                    e.lerp_(p, 1.0 - config.ema_decay)
        seen += _size(batch) * world
        bar.update()
        acting = ema if ema is not None else policy
        if not main_process:  # logging, evaluation and checkpoints happen on rank 0 only
            continue
        if step % config.log_every == 0 or step == config.steps:
            now = time.perf_counter()
            metrics.update(lr=optimizer.param_groups[0]["lr"], samples_per_s=seen / (now - tick))
            seen, tick = 0, now
            state["history"].append({"step": step, **metrics})
            bar.log(step, _headline(metrics))
            if log is not None:
                for key, value in metrics.items():
                    log(f"train/{key}", value, step)
        if step % config.eval_every == 0 or step == config.steps:
            val = validation_loss(acting, val_set, config.batch_size, device) if val_set else metrics["loss"]
            extra = on_eval(acting, step) if on_eval is not None else {}
            state["history"].append({"step": step, "val_loss": val, **extra})
            if log is not None:
                log("val/loss", val, step)
                for key, value in extra.items():
                    log(f"eval/{key}", value, step)
            if val < state["best_val"]:
                state["best_val"] = val
                state["best_step"] = step
                acting.save_pretrained(best)
        if step % config.checkpoint_every == 0 or step == config.steps:
            state.update(step=step, seconds=earlier + time.perf_counter() - started)
            save_checkpoint(last, policy, optimizer, state, acting)
    bar.close()
    state.update(step=step, seconds=earlier + time.perf_counter() - started)
    if main_process:
        write_text(run.history, json.dumps(state["history"], indent=1))
    return state
