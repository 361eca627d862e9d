"""Network building blocks shared by the backends (and by rl's actors and critics)."""

from __future__ import annotations

from typing import Sequence

from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with ``activation`` between them, then a linear head."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
