"""Autoregressive decoding at batch 1: `Decoder.step` against the plain cached forward pass
(`GPT.forward_cached` on one token at a time), in the same run.

    python benchmarks/bench_decoding.py                      # Kitchen's window: 10 observations
    python benchmarks/bench_decoding.py --tokens 1 2 10 26 72 --batch 1 64

The transformer is the policy configs' (4 layers, 4 heads, 128 wide) with room for 72 tokens
after the window and BOS (FAST's longest at Kitchen's chunk). Per row: a chunk of N tokens, the
prefill of the window and BOS then N - 1 one-token steps (the first token comes from the
prefill), median ms over `--calls` chunks, in `--pairs` alternating pairs (this VM's speed
drifts); the last column is the median of the pairs' ratios reference / decoder. Both sides
compute the same features (checked before timing).
"""

from __future__ import annotations

import argparse

import torch
from harness import alternating_pairs, call_ms

from vqbet.nn.gpt import GPT


def decoder_chunk(gpt: GPT, prefix: torch.Tensor, token: torch.Tensor, n: int) -> torch.Tensor:
    """n tokens through `GPT.decoder`: the prefix (B, t, C), then n - 1 steps -> features (B, C)."""
    decoder = gpt.decoder(token.shape[0], token.device, token.dtype)
    out = decoder.prefill(prefix)[:, -1]
    for _ in range(n - 1):
        out = decoder.step(token + out)
    return out


def reference_chunk(gpt: GPT, prefix: torch.Tensor, token: torch.Tensor, n: int) -> torch.Tensor:
    """The same through `GPT.forward_cached`, the modules' cached pass, one token at a time."""
    cache = gpt.new_cache(token.shape[0], token.device, token.dtype)
    out = gpt.forward_cached(prefix, cache, 0)[:, -1]
    for i in range(n - 1):
        out = gpt.forward_cached((token + out)[:, None], cache, prefix.shape[1] + i)[:, 0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obs-window", type=int, default=10)
    parser.add_argument("--tokens", type=int, nargs="*", default=[2, 26, 72])
    parser.add_argument("--batch", type=int, nargs="*", default=[1])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, longest = 128, max(args.tokens)
    gpt = GPT(block_size=args.obs_window + longest, n_layer=4, n_head=4, n_embd=width, dropout=0.1).eval()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; GPT 4 x 4 x {width}, "
        f"window {args.obs_window} + BOS, up to {longest} tokens\n"
    )
    print(
        "| batch | tokens | Decoder ms | forward_cached ms | Decoder us a step | forward_cached / Decoder |"
    )
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for batch in args.batch:
            prefix = torch.randn(batch, args.obs_window + 1, width)
            token = torch.randn(batch, width)
            for n in args.tokens:
                inputs = (gpt, prefix, token, n)
                torch.testing.assert_close(
                    decoder_chunk(*inputs), reference_chunk(*inputs), rtol=1e-4, atol=1e-5
                )
                ours, ref, ratio = alternating_pairs(
                    lambda inputs=inputs: call_ms(lambda a: decoder_chunk(*a), inputs, args.calls),
                    lambda inputs=inputs: call_ms(lambda a: reference_chunk(*a), inputs, args.calls),
                    args.pairs,
                )
                prefill = call_ms(lambda a: decoder_chunk(*a), (gpt, prefix, token, 1), args.calls)
                per_step = f"{1000 * (ours - prefill) / (n - 1):.0f}" if n > 1 else "-"
                print(f"| {batch} | {n} | {ours:.2f} | {ref:.2f} | {per_step} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
