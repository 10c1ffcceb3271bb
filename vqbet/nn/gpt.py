"""A small causal transformer over continuous tokens (nanoGPT-shaped: pre-LayerNorm, GELU MLP,
learned positions, `scaled_dot_product_attention`; an explicit attention when training on CPU).
Reads top to bottom, smallest part first."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.nn.decoding import Decoder, Layout, WeightLayout


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper CPU mask. nn.Dropout's `bernoulli_` (as `rand_like`) draws one
    random number per element, a large share of a CPU training step. Here each 64-bit draw of
    the global generator gives four 16-bit lanes, an element kept where its lane is >= the
    p-quantile: the drop probability is p rounded to 1/65536, and the mask costs a quarter of the
    draws. CUDA keeps the fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.is_cuda:
            return super().forward(x)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        lanes = bits.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
        keep = lanes >= (round(self.p * 65536) - 32768)
        # Masked first, scaled by a Python float after: a bf16 x stays bf16 (a float32 mask would
        # promote it) and the 1 / (1 - p) scale is not rounded to bf16 (a 0.2% bias at p = 0.1).
        return (x * keep).mul_(1.0 / (1.0 - self.p))


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.attn_drop = Dropout(dropout)
        self.resid_drop = Dropout(dropout)

    def forward(self, x: Tensor, last_only: bool = False, allowed: Tensor | None = None) -> Tensor:
        """x (B, T, C) -> (B, T, C), or (B, 1, C) for the last position only when `last_only`.
        `allowed` (T, T) bool, True where query i may attend to key j, replaces the causal mask."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, nh, T, hs)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if last_only:
            # The last query may attend to every key, so no causal mask is needed.
            q, t = q[:, :, -1:], 1
            allowed = None if allowed is None else allowed[-1:]
        p = self.dropout if self.training else 0.0
        if self.training and torch.is_grad_enabled() and not x.is_cuda and not last_only:
            # The mask is passed only when there is one: the benchmark harness swaps in a
            # three-argument version of this method.
            explicit = self._explicit_attention
            y = explicit(q, k, v) if allowed is None else explicit(q, k, v, allowed)
        elif allowed is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=not last_only, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(self.proj(y))

    def forward_cached(self, x: Tensor, cache: Tensor, start: int) -> Tensor:
        """x (B, t, C), the tokens at positions start .. start + t - 1 -> (B, t, C); `cache` (B, 2,
        nh, block_size, hs), keys then values, holds positions < start and gets these written in.
        Autoregressive decoding then runs each new token alone against the cached prefix (`Decoder`)."""
        b, t, c = x.shape
        hs = c // self.n_head
        qkv = self.qkv(x)
        cache[:, :, :, start : start + t] = qkv[..., c:].view(b, t, 2, self.n_head, hs).permute(0, 2, 3, 1, 4)
        q = qkv[..., :c].view(b, t, self.n_head, hs).transpose(1, 2)
        end = start + t
        # New query i sees cached keys < start and new keys <= i: a causal mask offset by start.
        mask = None if t == 1 else torch.ones(t, end, dtype=torch.bool, device=x.device).tril(start)
        y = F.scaled_dot_product_attention(q, cache[:, 0, :, :end], cache[:, 1, :, :end], attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def _explicit_attention(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None) -> Tensor:
        """Causal attention (B, nh, T, hs) x3 -> (B, nh, T, hs) as bmm, softmax, bmm (`allowed`
        (T queries, T keys) bool in place of the causal mask). For training on
        CPU at these short windows (T <= ~10) it is faster than scaled_dot_product_attention
        forward + backward (its fused CPU kernel's backward; with dropout, its math path's bernoulli_
        mask and safe-softmax checks; benchmarks/bench_policy.py measures both); acting (no grad)
        keeps the fused kernel, faster there. Scores are laid out keys first, (B nh, T keys,
        T queries): the CPU softmax over a dimension that is not the innermost vectorises across
        queries, where over 10 innermost keys it would not."""
        b, nh, t, hs = q.shape
        if allowed is None:
            bias = torch.full((t, t), float("-inf"), device=q.device).tril(-1)  # -inf: key after query
        else:
            bias = torch.zeros(t, t, device=q.device).masked_fill(~allowed.T, float("-inf"))
        scores = torch.baddbmm(
            bias.expand(b * nh, t, t),
            k.reshape(b * nh, t, hs),
            q.reshape(b * nh, t, hs).transpose(1, 2),
            alpha=hs**-0.5,
        )
        weights = self.attn_drop(F.softmax(scores, dim=1, dtype=torch.float32))
        return torch.bmm(weights.to(v.dtype).transpose(1, 2), v.reshape(b * nh, t, hs)).view(b, nh, t, hs)


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward_cached(self, x: Tensor, cache: Tensor, start: int) -> Tensor:
        x = x + self.attn.forward_cached(self.ln_1(x), cache, start)
        return x + self.mlp(self.ln_2(x))

    def forward(self, x: Tensor, last_only: bool = False, allowed: Tensor | None = None) -> Tensor:
        y = self.attn(self.ln_1(x), last_only, allowed)
        x = (x[:, -1:] if last_only else x) + y
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Causal transformer: tokens (B, T, n_embd) -> features (B, T, n_embd), T <= block_size."""

    def __init__(self, *, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.block_size = block_size
        self.pos = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self._decoders: dict[tuple[int, torch.device, torch.dtype, int], Decoder] = {}
        self._layout = WeightLayout()
        self.apply(self._init_weights)
        nn.init.normal_(self.pos, std=0.02)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer).
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / (2 * n_layer) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(
        self,
        tokens: Tensor,
        last_only: bool = False,
        *,
        positions: Tensor | None = None,
        allowed: Tensor | None = None,
    ) -> Tensor:
        """tokens (B, T, C) -> features (B, T, C); with `last_only`, (B, 1, C) for the last position,
        which is all acting needs: the last block then runs its query and MLP on one token.
        A layout other than one causal sequence: `positions` (T,) long, each token's position
        (default 0 .. T-1), and `allowed` (T, T) bool, True where token i may attend to token j
        (default: j <= i)."""
        t = tokens.shape[1]
        if positions is None:
            if t > self.block_size:
                raise ValueError(f"GPT: sequence of {t} tokens exceeds block_size {self.block_size}")
            pos = self.pos[:, :t]
        else:
            if positions.shape != (t,) or int(positions.max()) >= self.block_size:
                raise ValueError(
                    f"GPT: positions must be ({t},) and below block_size {self.block_size}, got "
                    f"{tuple(positions.shape)} up to {int(positions.max())}"
                )
            pos = self.pos[:, positions]
        if allowed is not None and allowed.shape != (t, t):
            raise ValueError(f"GPT: allowed must be ({t}, {t}), got {tuple(allowed.shape)}")
        x = self.drop(tokens + pos)
        for i, block in enumerate(self.blocks):
            x = block(x, last_only and i == len(self.blocks) - 1, allowed)
        return self.ln_f(x)

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
        """Empty key and value buffers for `forward_cached` and `Decoder`: per block, one
        (B, 2, nh, block_size, hs) tensor, keys then values (one copy writes both)."""
        out = []
        for block in self.blocks:
            nh = block.attn.n_head
            shape = (batch, 2, nh, self.block_size, self.pos.shape[-1] // nh)
            out.append(torch.zeros(shape, device=device, dtype=dtype))
        return out

    def forward_cached(self, tokens: Tensor, cache: list[Tensor], start: int) -> Tensor:
        """tokens (B, t, C) at positions start .. start + t - 1 -> features (B, t, C), with the keys
        and values of earlier positions read from `cache` (`new_cache`) and these written to it. In
        eval mode, equal to the matching positions of `forward` on the whole sequence."""
        t = tokens.shape[1]
        if start + t > self.block_size:
            raise ValueError(f"GPT: positions up to {start + t} exceed block_size {self.block_size}")
        x = tokens + self.pos[:, start : start + t]
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x = block.forward_cached(x, layer_cache, start)
        return self.ln_f(x)

    def decoding_weights(self) -> Layout:
        """The blocks' weights laid out for `Decoder` (`WeightLayout`), made again only after a
        parameter changed."""
        return self._layout.of(self)

    def pin_decoding_weights(self) -> None:
        """Before `torch.export`: the program's decoding takes the weights as they are now."""
        self._layout.pin(self)

    def decoder(self, batch: int, device: torch.device, dtype: torch.dtype) -> Decoder:
        """A `Decoder` for `batch` rows (eval mode): one per (batch, device, dtype, thread), kept
        with its cache for the next sequences (the last four kept); threads acting at once each
        get their own."""
        if torch.compiler.is_compiling():
            return Decoder(self, batch, device, dtype)
        key = (batch, torch.device(device), dtype, threading.get_ident())
        kept = self._decoders
        decoder = kept.pop(key, None) or Decoder(self, batch, device, dtype)
        kept[key] = decoder  # most recent last
        while len(kept) > 4:
            kept.pop(next(iter(kept)))
        return decoder
