"""VQ-BeT's prediction heads as one module: a code head per RVQ layer (logits over its K codes) and
the offset head (a correction of the decoded chunk), each an MLP with two GELU hidden layers.

With `sequential` codes, code head i < L sees the transformer features h and the embeddings of the
codes of layers < i; without, one joint code head sees h alone and gives the logits of all L layers
(the official VQ-BeT's default). The offset head (last) sees h and every code's embedding.
The heads are computed together rather than as L + 1 small MLPs: the first layers of all heads are
one matmul over [h, e_0 .. e_{L-1}] with a block-triangular mask (what a head may not see is
multiplied by zero), then each head's second and output layer on its block of that result. With
teacher forcing (training: every code is known) the first layers are one large matmul instead of
L + 1 small ones; acting samples the codes one layer at a time and reuses the shared part.

Biases are stored flat (1-D), so AdamW's decay groups (`vqbet.nn.optim.decay_groups`) leave them
undecayed as they did the per-head `nn.Linear` biases.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PredictionHeads(nn.Module):
    """L code heads and an offset head of output size `offset_dim`, all of hidden width `hidden`."""

    def __init__(
        self,
        n_embd: int,
        code_embd: int,
        hidden: int,
        num_layers: int,
        codebook_size: int,
        offset_dim: int,
        sequential: bool = True,
    ) -> None:
        super().__init__()
        c, e, h, layers, k = n_embd, code_embd, hidden, num_layers, codebook_size
        self.code_heads = layers if sequential else 1
        self.code_out = k if sequential else layers * k
        heads = self.code_heads + 1
        self.n_embd, self.code_embd, self.hidden = c, e, h
        self.num_layers, self.codebook_size, self.offset_dim = layers, k, offset_dim
        self.sequential = sequential
        self.code_embed = nn.Parameter(torch.randn(layers, k, e))  # as nn.Embedding: N(0, 1)
        self.w1 = nn.Parameter(torch.empty(c + layers * e, heads * h))
        self.b1 = nn.Parameter(torch.empty(heads * h))
        self.w2 = nn.Parameter(torch.empty(heads, h, h))
        self.b2 = nn.Parameter(torch.empty(heads * h))
        self.w3 = nn.Parameter(torch.empty(self.code_heads, h, self.code_out))
        self.b3 = nn.Parameter(torch.empty(self.code_heads * self.code_out))
        self.w_offset = nn.Parameter(torch.empty(h, offset_dim))
        self.b_offset = nn.Parameter(torch.empty(offset_dim))
        mask = torch.zeros(c + layers * e, heads, h)
        mask[:c] = 1.0
        for i in range(heads):
            for j in range(self.visible(i)):
                mask[c + j * e : c + (j + 1) * e, i] = 1.0
        self.register_buffer("mask", mask.view(c + layers * e, heads * h), persistent=False)
        self.reset_parameters()
        # w1 is zero wherever the mask hides (reset_parameters, and training: those entries get
        # no gradient and AdamW's decay keeps zero at zero), so acting uses w1 as it is rather
        # than masking the (C + L*E, heads*H) matrix at every call.
        # Loaded weights are masked once to keep that true for any state dict.
        self.register_load_state_dict_post_hook(PredictionHeads._mask_loaded)

    @staticmethod
    def _mask_loaded(module: nn.Module, _incompatible: object) -> None:
        with torch.no_grad():
            module.w1.mul_(module.mask)

    def visible(self, head: int) -> int:
        """How many code embeddings head `head` sees (the first that many layers')."""
        if head == self.code_heads:
            return self.num_layers
        return head if self.sequential else 0

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, head by head: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        c, e, h = self.n_embd, self.code_embd, self.hidden
        with torch.no_grad():
            for i in range(self.code_heads + 1):
                bound = 1.0 / math.sqrt(c + self.visible(i) * e)
                self.w1[:, i * h : (i + 1) * h].uniform_(-bound, bound)
                self.b1[i * h : (i + 1) * h].uniform_(-bound, bound)
            for weight, bias in ((self.w2, self.b2), (self.w3, self.b3), (self.w_offset, self.b_offset)):
                bound = 1.0 / math.sqrt(h)
                weight.uniform_(-bound, bound)
                bias.uniform_(-bound, bound)
            self.w1.mul_(self.mask)

    def embed(self, codes: Tensor) -> Tensor:
        """codes (N, L) -> their embeddings side by side (N, L * code_embd)."""
        layers = torch.arange(self.num_layers, device=codes.device)
        return self.code_embed[layers, codes].flatten(1)

    def forward(self, h: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced: features h (N, C) and codes (N, L) -> (logits (L, N, K), offsets
        (N, offset_dim)), logits of layer i conditioned on codes[:, :i] (sequential)."""
        out = self.code_out
        x = torch.cat([h, self.embed(codes).to(h.dtype)], dim=-1)
        first = F.gelu(torch.addmm(self.b1, x, self.w1 * self.mask))  # (N, heads * H)
        # Per head, a matmul on its column block of `first` (a strided view: no copy) rather than
        # one bmm over (heads, N, H): the bmm's weight gradient needed a transposed copy of the
        # whole activation, a visible share of a CPU step. split, not slicing: its
        # backward is one cat, not a zero-filled gradient per slice.
        # Likewise unbind, not indexing, for the stacked weights: indexing's backward zero-fills a
        # gradient of the whole (heads, H, H) tensor per head and sums them.
        hidden = first.split(self.hidden, dim=1)
        b2, w2 = self.b2.split(self.hidden), self.w2.unbind(0)
        second = [F.gelu(torch.addmm(b2[i], hidden[i], w2[i])) for i in range(self.code_heads + 1)]
        b3, w3 = self.b3.split(out), self.w3.unbind(0)
        logits = torch.stack([torch.addmm(b3[i], second[i], w3[i]) for i in range(self.code_heads)])
        if not self.sequential:  # (1, N, L * K) -> (L, N, K)
            logits = logits[0].view(-1, self.num_layers, self.codebook_size).transpose(0, 1)
        return logits, torch.addmm(self.b_offset, second[-1], self.w_offset)

    def sample(self, h: Tensor, choose: Callable[[Tensor, int], Tensor]) -> tuple[Tensor, Tensor]:
        """Acting: codes (N, L) chosen layer by layer by `choose(logits (N, K), layer) -> (N,)`, each layer
        conditioned on the codes chosen before it (sequential), and the offsets (N, offset_dim)."""
        c, e, hidden, out = self.n_embd, self.code_embd, self.hidden, self.code_out
        w1 = self.w1  # zero where masked (see __init__)
        pre = torch.addmm(self.b1, h, w1[:c])  # every head's share from h: (N, heads * H)
        codes = torch.empty(h.shape[0], self.num_layers, dtype=torch.long, device=h.device)
        logits = None
        for i in range(self.num_layers):
            if self.sequential or i == 0:
                part = slice(i * hidden, (i + 1) * hidden)
                second = F.gelu(torch.addmm(self.b2[part], F.gelu(pre[:, part]), self.w2[i]))
                logits = torch.addmm(self.b3[i * out : (i + 1) * out], second, self.w3[i])
            k = self.codebook_size
            codes[:, i] = choose(logits if self.sequential else logits[:, i * k : (i + 1) * k], i)
            # Code i's share of every later head's first layer (zero where the mask hides it).
            pre = pre + self.code_embed[i, codes[:, i]].to(pre.dtype) @ w1[c + i * e : c + (i + 1) * e]
        part = slice(self.code_heads * hidden, None)
        second = F.gelu(torch.addmm(self.b2[part], F.gelu(pre[:, part]), self.w2[-1]))
        return codes, torch.addmm(self.b_offset, second, self.w_offset)
