"""The conditional noise-prediction network eps_theta(x, s, t) of the score model (seed 002, App. A.2).

A residual MLP on (action, state, time embedding): the action and the (normalised) state are
concatenated and projected to ``width``; ``blocks`` residual blocks follow, each adding a
projection of the time embedding; swish (SiLU) throughout. It predicts the noise z of
x_t = alpha(t) x_0 + sigma(t) z, so the score is -eps_theta / sigma(t).

``t`` may be a 0-d tensor (one time for the whole batch, as in every sampler and solver step:
the time path then runs once, not once per row) or a [N] tensor (training).

The time embedding is DDPM's sinusoidal embedding of ``time_scale * t`` (1000, as DDPM and
score_sde's continuous VP models). Its fastest component varies on a t-scale of 1/time_scale,
which the adaptive ODE solvers must resolve: an untrained width-64 network needs 488 network
evaluations for one dopri5 likelihood solve with 1000 and 116 with 20. How a trained model's
accuracy and speed compare at 20 and 1000 is measured in the README ("Time embedding").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import silu


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """DDPM's sinusoidal embedding of ``scale * t``: [..., dim] for t of shape [...] (an odd
    ``dim`` gets a zero last entry, as DDPM pads it). The frequencies are 10000^(-k/half),
    k < half; DDPM divides by half - 1, so its lowest is exactly 1/10000. Kept, since fitted
    models depend on it."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    angles = (scale * t)[..., None] * freqs
    return torch.nn.functional.pad(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1), (0, dim % 2))


class ResidualBlock(nn.Module):
    """h + W2 swish(W1 swish(h) + Wt temb)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Linear(width, width)
        self.time = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        return h + self.outer(silu(self.inner(silu(h)) + self.time(temb)))


class NoiseNetwork(nn.Module):
    """eps_theta(x [N, A], s [N, S], t [] or [N]) -> [N, A]."""

    def __init__(self, act_dim: int, obs_dim: int, width: int = 256, blocks: int = 3,
                 time_scale: float = 1000.0) -> None:
        super().__init__()
        self.width = width
        self.time_scale = time_scale
        self.time_mlp = nn.Linear(width, width)
        self.input = nn.Linear(act_dim + obs_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(blocks))
        self.output = nn.Linear(width, act_dim)

    def forward(self, x: Tensor, obs: Tensor, t: Tensor) -> Tensor:
        temb = silu(self.time_mlp(sinusoidal_embedding(t.reshape(-1), self.width, self.time_scale).to(x.dtype)))
        h = self.input(torch.cat([x, obs], dim=-1))
        for block in self.blocks:
            h = block(h, temb)
        return self.output(silu(h))

    def flops_per_row(self) -> int:
        """Multiply-add FLOPs of one row's forward when t is shared by the batch (the sampler case)."""
        per_row = [self.input, self.output, *(layer for b in self.blocks for layer in (b.inner, b.outer))]
        return sum(2 * layer.in_features * layer.out_features for layer in per_row)


class NoiseEnsemble(nn.Module):
    """k independently initialised :class:`NoiseNetwork` members (seed 002, Table A.1: k = 1 or 3).

    The model treats them as the uniform mixture (1/k) sum_j p_j(a|s); see ``score.model``.
    """

    def __init__(self, act_dim: int, obs_dim: int, width: int, blocks: int, members: int,
                 time_scale: float = 1000.0) -> None:
        super().__init__()
        self.members = nn.ModuleList(NoiseNetwork(act_dim, obs_dim, width, blocks, time_scale) for _ in range(members))

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> NoiseNetwork:
        return self.members[index]
