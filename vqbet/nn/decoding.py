"""One-token decoding steps of a `GPT` against its key/value cache, in eval mode: what
autoregressive acting at batch 1 is made of.

At batch 1 a step is ~45 operations on 128-wide vectors, each a few microseconds, so the work
around them (module calls, slicing the cache, a 3 MB weight read laid out for the wrong side of
the product) costs as much as the arithmetic. A `Decoder` therefore keeps, across the chunks it
decodes, its cache buffer and each step's views into it, and the layers' weights transposed
for `addmm` (rebuilt when a weight changes: an optimizer step, `load_state_dict`, `.to`). GELU is
`erf` and one `addcmul`, its scales folded into the weights around it (the MLP's hidden layer
comes out divided by sqrt 2), since torch's CPU `gelu` costs ~15 us a call at this size where
those two cost ~3. An exported program takes the layout pinned before tracing as its
constants (`WeightLayout`), and so computes what the eager policy does, bit for bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.module import register_module_parameter_registration_hook

if TYPE_CHECKING:
    from vqbet.nn.gpt import GPT

_SQRT_HALF = 1.0 / math.sqrt(2.0)

_registrations = 0
"""Parameters assigned to any module so far: a parameter object replaced on a GPT is seen."""


def _count_registration(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    global _registrations
    _registrations += 1


register_module_parameter_registration_hook(_count_registration)


class Layout(NamedTuple):
    """A GPT's tensors as `Decoder._run` reads them (no module attribute lookups in the loop)."""

    blocks: list[tuple[Any, ...]]
    """Per block: LayerNorm 1, W_qkv^T, b_qkv, W_proj^T, b_proj, LayerNorm 2, the MLP's (scaled),
    heads, LayerNorm eps."""
    pos: Tensor
    """Position embeddings (1, block_size, C): the parameter itself."""
    final: tuple[Tensor, Tensor, float]
    """The final LayerNorm's weight, bias and eps."""


@torch.no_grad()  # acting only: the laid-out copies are constants, not parameters
def _lay_out(gpt: GPT) -> Layout:
    # For x (B, in) @ W^T: a contiguous W^T reads rows in order (~30% faster at batch 1).
    lay = lambda w: w.t().contiguous()  # noqa: E731
    blocks = [
        (
            b.ln_1.weight,
            b.ln_1.bias,
            lay(b.attn.qkv.weight),
            b.attn.qkv.bias,
            lay(b.attn.proj.weight),
            b.attn.proj.bias,
            b.ln_2.weight,
            b.ln_2.bias,
            lay(b.mlp.fc.weight) * _SQRT_HALF,  # the MLP's hidden h comes out as h / sqrt 2
            b.mlp.fc.bias * _SQRT_HALF,
            lay(b.mlp.proj.weight) * _SQRT_HALF,  # GELU(h) = (h / sqrt 2)(1 + erf(h / sqrt 2)) / sqrt 2
            b.mlp.proj.bias,
            b.attn.n_head,
            b.ln_1.eps,
        )
        for b in gpt.blocks
    ]
    return Layout(blocks, gpt.pos, (gpt.ln_f.weight, gpt.ln_f.bias, gpt.ln_f.eps))


class WeightLayout:
    """A GPT's weights laid out for decoding, kept while its parameters stay as they are: made
    again after an in-place change (optimizer step, `load_state_dict`, EMA), new storage (`.to`)
    or a parameter replaced. Traced, the layout is made in the graph from the parameters, except
    under `torch.export` after `pin`: the pinned layout is then the program's constants (no
    transposes on every call), so it computes what the eager policy does, bit for bit."""

    def __init__(self) -> None:
        self.weights: Layout | None = None
        self.pinned: Layout | None = None
        self._params: list[nn.Parameter] = []
        self._registrations = -1
        self._key: tuple[tuple[int, int], ...] = ()

    def of(self, gpt: GPT) -> Layout:
        if torch.compiler.is_compiling():
            # (torch < 2.6 has no is_exporting: its programs lay the weights out on each call)
            exporting = getattr(torch.compiler, "is_exporting", lambda: False)()
            pinned = self.pinned is not None and exporting
            return self.pinned if pinned else _lay_out(gpt)
        if self._registrations != _registrations:  # walking the modules costs ~100 us: rarely
            self._params, self._registrations = list(gpt.parameters()), _registrations
        key = tuple((p.data_ptr(), p._version) for p in self._params)
        if key != self._key:
            self.weights, self._key = _lay_out(gpt), key
        return self.weights

    def pin(self, gpt: GPT) -> None:
        """Before `torch.export` traces `gpt` as it is now: the program takes this layout."""
        self.pinned = self.of(gpt)


class Decoder:
    """Decodes `batch` rows of a GPT: `prefill` the first tokens (B, t, C), then `step` one token
    per row (B, C) at a time; both return features after the final LayerNorm. Positions count up
    from the prefill. Eval mode only (no dropout, no gradients to the weights). Equal to
    `GPT.forward` on the whole sequence up to float rounding."""

    def __init__(self, gpt: GPT, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        self.gpt = gpt
        self.batch = batch
        self.cache = gpt.new_cache(batch, device, dtype)
        self.position = 0
        self._views: dict[tuple[int, int], list[tuple[Tensor, Tensor, Tensor]]] = {}
        self._layout: Layout | None = None

    def _views_at(self, start: int, t: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per block: where the keys and values of positions start .. start + t - 1 go (B, 2, nh,
        t, hs), and the keys and values of positions 0 .. start + t - 1 (B, nh, start + t, hs)."""
        views = self._views.get((start, t))
        if views is None:
            end = start + t
            views = [(c[:, :, :, start:end], c[:, 0, :, :end], c[:, 1, :, :end]) for c in self.cache]
            self._views[start, t] = views  # (traced, a decoder lives for one call: `GPT.decoder`)
        return views

    def _run(self, x: Tensor, start: int) -> Tensor:
        """Embeddings (B, t, C) at positions start .. start + t - 1, t = 1 or start = 0 -> features
        (B, t, C); their keys and values written to the cache."""
        b, t, c = x.shape
        if start + t > self.gpt.block_size:
            raise ValueError(f"GPT: position {start + t - 1} exceeds block_size {self.gpt.block_size}")
        blocks, pos, (final_w, final_b, final_eps) = self._layout
        x = (x + pos[0, start : start + t]).view(b * t, c)
        shape = (c,)
        for weights, (write, keys, values) in zip(blocks, self._views_at(start, t), strict=True):
            ln1_w, ln1_b, qkv_t, qkv_b, proj_t, proj_b, ln2_w, ln2_b, fc_t, fc_b, out_t, out_b, nh, eps = (
                weights
            )
            qkv = torch.addmm(qkv_b, torch.layer_norm(x, shape, ln1_w, ln1_b, eps), qkv_t)
            write.copy_(qkv[:, c:].view(b, t, 2, nh, c // nh).permute(0, 2, 3, 1, 4))
            q = qkv[:, :c].view(b, t, nh, c // nh).transpose(1, 2)
            # A prefill starts at 0, so its queries and keys are the same positions: causal.
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=t > 1)
            x = torch.addmm(x, y.transpose(1, 2).reshape(b * t, c), proj_t).add_(proj_b)
            h = torch.addmm(fc_b, torch.layer_norm(x, shape, ln2_w, ln2_b, eps), fc_t)
            x = torch.addmm(x, torch.addcmul(h, h, torch.erf(h)), out_t).add_(out_b)  # h (1 + erf h)
        self.position = start + t
        return torch.layer_norm(x, shape, final_w, final_b, final_eps).view(b, t, c)

    def prefill(self, tokens: Tensor) -> Tensor:
        """Token embeddings (B, t, C) at positions 0 .. t-1 -> features (B, t, C); starts a new
        sequence (what the cache held before is overwritten as positions are reached)."""
        if tokens.shape[0] != self.batch:
            raise ValueError(f"Decoder: made for {self.batch} rows, got {tokens.shape[0]}")
        self._layout = self.gpt.decoding_weights()
        return self._run(tokens, 0)

    def step(self, token: Tensor) -> Tensor:
        """Token embeddings (B, C) at the next position -> features (B, C)."""
        return self._run(token[:, None], self.position)[:, 0]
