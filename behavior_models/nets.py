"""Network building blocks shared by the backends (and by rl's actors and critics)."""

from __future__ import annotations

from typing import Sequence

from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU,
        dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with ``activation`` between them, then a linear head;
    ``dropout`` > 0 adds an ``nn.Dropout`` after each hidden layer (0 adds no module at all)."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), *([nn.Dropout(dropout)] if dropout > 0 else []), activation()]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
