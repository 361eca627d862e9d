"""Behavior cloning: the floor every offline RL algorithm must beat.

A deterministic actor pi(s) = tanh(MLP(s)) regressed onto the dataset actions,
L(phi) = E_{(s,a)~D} ||pi_phi(s) - a||^2 (mean over batch and action dims).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rl.algos.base import AlgoConfig, Algorithm, adam, step
from rl.core.buffer import Batch
from rl.core.networks import DeterministicActor


@dataclass(frozen=True)
class BCConfig(AlgoConfig):
    hidden: tuple[int, ...] = (256, 256)  # actor MLP widths
    lr: float = 1e-3  # Adam
    reward_transform: str = "none"  # BC ignores rewards


class BC(Algorithm):
    name = "bc"
    config_class = BCConfig
    behavior_kind = "none"

    def __init__(self, config: BCConfig, obs_dim: int, act_dim: int, device="cpu", behavior=None) -> None:
        super().__init__(config, obs_dim, act_dim, device, behavior)
        self.actor = DeterministicActor(obs_dim, act_dim, config.hidden).to(self.device)
        self.optimizers = {"actor": adam(self.actor.parameters(), lr=config.lr)}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        loss = (self.actor(batch.observations) - batch.actions).pow(2).mean()
        step(self.optimizers["actor"], loss)
        self.updates += 1
        return {"actor_loss": loss.detach()}

    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.actor(obs)
