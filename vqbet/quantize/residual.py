"""Residual quantisation: L quantisers applied in turn, each to what the previous ones left over.

With K codes per layer, L layers represent K^L combinations from L*K stored vectors. Nothing here
assumes a particular L.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.quantize.common import (
    CodebookUsage,
    QuantizerOutput,
    autocast_disabled,
    nearest_rows,
    stacked_rows,
)
from vqbet.quantize.fsq import FSQ
from vqbet.quantize.vq import (
    VectorQuantizer,
    same_settings,
    search_loss,
    squared_error,
    update_layers_,
)

WORKSPACE_LIMIT_BYTES = 64 << 20
"""Largest scratch buffer a residual quantiser keeps between no-grad calls (64 MiB: a batch of
65,536 latents of 256 floats); larger batches allocate theirs per call."""


class Residual(nn.Module):
    """Sum of quantisers over successive residuals; the base of ResidualVQ and ResidualFSQ.

    Layer l quantises r_l = x - sum_{j<l} q_j (previous codes detached, as in the reference
    implementations); the output is sum_l q_l, each term carrying its layer's gradient estimator.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        dim: int,
        project_in: nn.Module | None = None,
        project_out: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if len(layers) < 1:
            raise ValueError("Residual: needs at least one layer")
        self.layers = nn.ModuleList(layers)
        self.dim = dim
        self.codebook_size = int(layers[0].codebook_size)
        self.project_in = project_in if project_in is not None else nn.Identity()
        self.project_out = project_out if project_out is not None else nn.Identity()

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, x: Tensor) -> QuantizerOutput:
        """x (..., dim) -> QuantizerOutput(quantized (..., dim), codes (..., L), loss (), usage (L,))."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__}: expected x (..., {self.dim}), got {tuple(x.shape)}")
        latent = _project(self.project_in, x)
        if not torch.is_grad_enabled():
            quantized, codes, loss = self._quantize_no_grad(latent)
        elif latent.requires_grad or any(p.requires_grad for p in self.layers.parameters()):
            quantized, codes, loss = self._quantize_layers(latent)
        else:
            with torch.no_grad():
                quantized, codes, loss = self._quantize_no_grad(latent)
        # Integer codes and buffers carry no gradient; the stack is a copy: the snapshot.
        running = torch.stack([layer.usage for layer in self.layers])
        threshold = self.layers[0].dead_threshold
        return QuantizerOutput(
            quantized=_project(self.project_out, quantized),
            codes=codes,
            loss=loss,
            usage=CodebookUsage(codes, self.codebook_size, running, threshold),
        )

    def _quantize_layers(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each layer's own forward on successive residuals: latent (..., dim) ->
        (quantized (..., dim), codes (..., L), loss ())."""
        residual, quantized = latent, torch.zeros_like(latent)
        codes, loss = [], latent.new_zeros(())
        for layer in self.layers:
            out = layer(residual, with_usage=False)
            quantized = quantized + out.quantized
            residual = residual - out.quantized.detach()
            codes.append(out.codes)
            loss = loss + out.loss
        return quantized, torch.stack(codes, dim=-1), loss

    def _quantize_no_grad(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`_quantize_layers` without autograd; subclasses override it with faster paths."""
        return self._quantize_layers(latent)

    def _take_workspace(self, name: str, like: Tensor) -> Tensor:
        """A buffer shaped like `like`: the one the previous no-grad call left under `name`, or a
        new one. Taken out of the module while in use, so two threads never share one."""
        kept = self.__dict__.setdefault("_workspaces", {}).pop(name, None)
        if kept is None or (kept.shape, kept.dtype, kept.device) != (like.shape, like.dtype, like.device):
            kept = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        return kept

    def _keep_workspace(self, name: str, buffer: Tensor) -> None:
        if buffer.numel() * buffer.element_size() <= WORKSPACE_LIMIT_BYTES:
            self.__dict__.setdefault("_workspaces", {})[name] = buffer

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_workspaces", None)  # scratch memory: not part of a saved or copied module
        return state

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x (..., dim) -> codes (..., L); never changes state, in either mode."""
        residual = self.project_in(x)
        codes = []
        for layer in self.layers:
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.stack(codes, dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes (..., L) int64 -> quantised vectors (..., dim); equals forward's output in eval."""
        if codes.shape[-1] != self.num_layers:
            raise ValueError(
                f"{type(self).__name__}.decode: codes must be (..., {self.num_layers}), "
                f"got {tuple(codes.shape)}"
            )
        total = None
        for layer, layer_codes in zip(self.layers, codes.unbind(-1), strict=True):
            part = layer.decode(layer_codes)
            total = part if total is None else total + part
        return self.project_out(total)


def _project(module: nn.Module, x: Tensor) -> Tensor:
    """module(x), skipping the call of an identity (a module call costs microseconds: a
    noticeable share of a small quantiser's)."""
    return x if isinstance(module, nn.Identity) else module(x)


class ResidualVQ(Residual):
    """L VectorQuantizers of `codebook_size` codes on successive residuals.

    Args (keyword-only): dim, codebook_size, num_layers (>= 1), and every VectorQuantizer option
    (ema, decay, kmeans_init, dead_code_threshold, gradient, cosine, ...), applied to each layer.
    """

    def __init__(self, *, dim: int, codebook_size: int, num_layers: int, **vq_options) -> None:
        if num_layers < 1:
            raise ValueError(f"ResidualVQ: num_layers must be >= 1, got {num_layers}")
        layers = [
            VectorQuantizer(dim=dim, codebook_size=codebook_size, **vq_options) for _ in range(num_layers)
        ]
        super().__init__(layers, dim)

    def set_temperature(self, value: float) -> None:
        """Set the Gumbel-softmax temperature of every layer."""
        for layer in self.layers:
            layer.set_temperature(value)

    def _searches_together(self) -> bool:
        """Whether a no-grad call may search all layers from one codebook snapshot and update
        them after the search: not when the layers' settings differ, nor in training mode with
        Gumbel samples (the layers' forward draws them) or while a layer awaits its k-means
        initialisation (its random draws must follow the previous layers' dead-code reset and
        it changes its codebook before its search, as in the layers' forward)."""
        if not same_settings(self.layers):
            return False
        return not self.training or not any(
            layer.gradient == "gumbel" or (layer.kmeans_init and not bool(layer.initialized))
            for layer in self.layers
        )

    def _quantize_no_grad(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Search, loss and updates without the layers' forward, whose fixed cost per op and per
        layer is most of a small codebook's call: the distances to all codebooks come from one
        snapshot (its squared norms in one op, autocast switched off once); each layer's code
        vectors are subtracted from one residual buffer kept between calls (no fresh large tensor
        per layer), the last layer's never are; in training mode all layers' state is updated
        in one `update_layers_` pass at the end, from per-layer sums gathered during the search;
        the output is one `embedding_bag` sum over the snapshot, as the layers' forward would
        return (speed: benchmarks/bench_tokenizer.py)."""
        if not self._searches_together():
            return super()._quantize_no_grad(latent)
        with autocast_disabled(latent.device.type):
            return self._search_all(latent)

    def _search_all(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`_quantize_no_grad` with autocast off: latent (..., dim) -> (quantized (..., dim),
        codes (..., L), loss ())."""
        layers, first = self.layers, self.layers[0]
        flat = latent.float().reshape(-1, self.dim)
        k, count = self.codebook_size, self.num_layers
        # The codebooks as searched: later layers' updates (and the EMA step) come after.
        table = torch.cat([layer.codebook.detach() for layer in layers]).float()  # (L*K, D)
        table_t, e_sq = table.t(), table.square().sum(dim=1)
        sums = flat.new_zeros(count, k, self.dim) if self.training and first.ema else None
        residual, gathered, codes, errors = flat, None, [], []
        for i, layer in enumerate(layers):
            rows = slice(i * k, (i + 1) * k)
            codebook, prepared = table[rows], layer._normalize(residual)
            layer_codes, offsets = nearest_rows(prepared, table_t[:, rows], e_sq[rows], first.block_elements)
            errors.append(squared_error(offsets, prepared))
            if sums is not None:  # before the residual buffer is overwritten
                sums[i].index_add_(0, layer_codes, prepared)
            if i < count - 1:
                if residual is flat:  # the latent itself is never written
                    residual = self._take_workspace("residual", flat)
                    torch.sub(flat, torch.index_select(codebook, 0, layer_codes, out=residual), out=residual)
                else:
                    gathered = self._take_workspace("gathered", flat) if gathered is None else gathered
                    residual.sub_(torch.index_select(codebook, 0, layer_codes, out=gathered))
            codes.append(layer_codes)
        if residual is not flat:
            self._keep_workspace("residual", residual)
        if gathered is not None:
            self._keep_workspace("gathered", gathered)
        codes = torch.stack(codes, dim=-1)
        stacked = stacked_rows(codes, k)
        if self.training:
            counts = torch.bincount(stacked.reshape(-1), minlength=count * k).float().view(count, k)

            def layer_inputs(layer: int, pick: Tensor) -> Tensor:
                # The same subtractions in the same order as above: bit-equal to the buffer's rows.
                part = flat[pick]
                for j in range(layer):
                    part = part - table[j * k + codes[pick, j]]
                return layers[layer]._normalize(part)

            update_layers_(layers, counts, sums, layer_inputs, flat.shape[0])
        loss = search_loss(torch.stack(errors), first.loss_weight, flat.numel())
        quantized = F.embedding_bag(stacked, table, mode="sum")
        lead = latent.shape[:-1]
        return quantized.reshape(*lead, self.dim).to(latent.dtype), codes.reshape(*lead, -1), loss


class ResidualFSQ(Residual):
    """L FSQ layers on successive residuals; layer l uses a grid (levels - 1)^l times finer.

    Args (keyword-only): levels (per latent dimension), num_layers (>= 1), dim (input size; linear
    projections in and out when it differs from len(levels)).
    """

    def __init__(self, *, levels: Sequence[int], num_layers: int, dim: int | None = None) -> None:
        if num_layers < 1:
            raise ValueError(f"ResidualFSQ: num_layers must be >= 1, got {num_layers}")
        levels = list(levels)
        first = FSQ(levels=levels)  # validates levels
        step = torch.tensor(levels, dtype=torch.float32) - 1
        layers = [first] + [FSQ(levels=levels, scale=(step**i).tolist()) for i in range(1, num_layers)]
        latent_dim = len(levels)
        dim = latent_dim if dim is None else dim
        projected = dim != latent_dim
        super().__init__(
            layers,
            dim,
            project_in=nn.Linear(dim, latent_dim) if projected else None,
            project_out=nn.Linear(latent_dim, dim) if projected else None,
        )
        self.levels = levels
