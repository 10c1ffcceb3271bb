"""The official VQ-BeT implementation (github.com/jayLEE0301/vq_bet_official) at its Kitchen config,
the reference that benchmarks/bench_policy.py measures in the same run as ours.

    python benchmarks/official.py DIR [--batch 256] [--steps 30] [--threads 2]

DIR is a checkout of that repository you made yourself (nothing is downloaded). This module runs in
its own process with DIR on PYTHONPATH (`harness.official_samples_per_s` starts it), so the
official top-level packages (`vq_behavior_transformer`, `vqvae`, its own `vector_quantize_pytorch`;
they need `einops`) never mix with ours. It builds `BehaviorTransformer` exactly as
`examples/configs/train_kitchen_nongoalcond.yaml` does: obs 60, action 9, window 10, action window
1, GPT 6 layers x 6 heads x 120 (output 256, dropout 0.1), residual VQ of 2 layers x 16 codes on a
512-D latent, a joint code head and an offset head 1024 wide, offset loss x 100, its own two AdamW
optimizers (lr 5.5e-5, weight decay 2e-4), and prints the training samples/s of its step on a
fixed random batch. Its `_predict` calls `.cuda()` on two index tensors unconditionally; the
harness makes `Tensor.cuda` the identity while it runs on the CPU (what a CPU user of that code has
to do); nothing else is changed.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def _cuda_is_identity() -> Iterator[None]:
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def build() -> tuple[torch.nn.Module, dict]:
    """(the official BehaviorTransformer at the Kitchen config on the CPU, its optimizers)."""
    try:
        from vq_behavior_transformer import GPT, BehaviorTransformer, GPTConfig
        from vqvae import VqVae
    except ImportError as err:
        raise ImportError(
            f"the official VQ-BeT could not be imported ({err}): run this with a checkout of "
            "jayLEE0301/vq_bet_official on PYTHONPATH, and einops installed"
        ) from None

    gpt = GPT(GPTConfig(block_size=30, input_dim=60, n_layer=6, n_head=6, n_embd=120))
    vqvae = VqVae(
        input_dim_h=1, input_dim_w=9, n_latent_dims=512, vqvae_n_embed=16, vqvae_groups=2, device="cpu"
    )
    model = BehaviorTransformer(
        obs_dim=60,
        act_dim=9,
        goal_dim=0,
        gpt_model=gpt,
        vqvae_model=vqvae,
        offset_loss_multiplier=100,
        obs_window_size=10,
        act_window_size=1,
        sequentially_select=False,
    )
    optimizers = model.configure_optimizers(weight_decay=2e-4, learning_rate=5.5e-5, betas=(0.9, 0.999))
    return model.train(), optimizers


def train_samples_per_s(model: torch.nn.Module, optimizers: dict, batch: int, steps: int) -> float:
    """Its training step (examples/train.py: forward, both optimizers) on a fixed random batch."""
    obs, action = torch.randn(batch, 10, 60), torch.randn(batch, 10, 9)

    def step() -> None:
        _, loss, _ = model(obs, None, action)
        for optimizer in optimizers.values():
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()

    with _cuda_is_identity():
        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, optimizers = build()
    print(f"samples_per_s {train_samples_per_s(model, optimizers, args.batch, args.steps):.3f}")


if __name__ == "__main__":
    main()
