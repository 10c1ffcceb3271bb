"""The small MLP that tokenizers and policies build their encoders, decoders and heads from."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int) -> nn.Sequential:
    """`depth` hidden layers of width `hidden` with GELU, then a linear output."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
