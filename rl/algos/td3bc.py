"""TD3+BC and TD3BC++ (seed 001, Eq. 4, 8, 10 and 12; ALGORITHMS.md "BEAR and BEAR++ / TD3BC++").

TD3 (:mod:`rl.algos.td3`: twin critics, target policy smoothing, delayed actor and target
updates) with a behaviour-cloning actor loss, Eq. 4 written as a loss:

    L_pi = -alpha * Q_1(s, pi(s)) / mean|Q_1(s, pi(s))|  +  mean_A (pi(s) - a)^2 * W(s, a)

(mean|Q_1| over the batch, detached; the squared error averaged over action dimensions, then
over the batch). Eq. 4 writes the normaliser as E|Q(s, a)| at the dataset actions; like TD3+BC's
released code (and the Appendix C.2 listing built on it), it is taken at the policy's actions. Plain TD3+BC has W = 1. Critic: sum_j E_D[(Q_j(s, a) - y)^2] with the TD3
target :func:`~rl.core.regularizers.td3_target`.

The two options of seed 001, each a flag, both on in the ``td3bc++`` preset:

* ``gradient_penalty`` = lambda_GP > 0 (Eq. 8): the critic loss gains
  lambda_GP * sum_j E[ReLU(||grad_a Q_j(s, a)|| - k)^2] at ``gp_actions`` uniform random
  actions per state, every ``gp_every``-th update only (the Appendix C.2 listing: 16 actions,
  N = 5, k = 1, the penalties of the two critics summed);
* ``constraint_relaxation`` (Eq. 10, 12): W(s, a) is the batch min-max normalised
  (Q_1 + Q_2)/2 of the dataset action, in [0, 1], without gradient, from the values of the
  critic step (before its gradient), as the listing's ``current_Q``. Eq. 10 is followed, not the
  listing's raw Q, whose sign flips with negative rewards (the maze's r - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rl.algos.base import BehaviorInputs
from rl.algos.td3 import TD3Config, TD3Family
from rl.core.buffer import Batch
from rl.core.regularizers import PlusPlusOptions, critic_loss, minmax_weight, table7_defaults
from rl.core.tasks import fill_unset_fields


@dataclass(frozen=True)
class TD3BCConfig(PlusPlusOptions, TD3Config):
    # Eq. 4's alpha; None resolves from the dataset id (seed 001, Table 7: 2.5, but 0.5 door,
    # 0.2 hammer, 0.5 pen and 0.02 relocate, where 2.5 "does not work", App. C.2).
    alpha: float | None = None


@dataclass(frozen=True)
class TD3BCPlusPlusConfig(TD3BCConfig):
    """TD3BC++: TD3+BC with both options of seed 001 on."""

    gradient_penalty: float | None = None  # resolves from the dataset id: Table 7's lambda_GP (1; 0.1 relocate)
    constraint_relaxation: bool = True  # Eq. 12


class TD3BC(TD3Family):
    name = "td3bc"
    config_class = TD3BCConfig
    behavior_kind = "none"
    config: TD3BCConfig

    @classmethod
    def resolve_config(cls, config: TD3BCConfig, dataset_id: str, steps: int) -> TD3BCConfig:
        return fill_unset_fields(config, table7_defaults(dataset_id))

    def __init__(self, config: TD3BCConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        config = self.resolve_config(config, "", 0)  # built without a dataset id: Table 7's locomotion column
        super().__init__(config, obs_dim, act_dim, device, behavior)

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """TD3's loss, plus lambda_GP times Eq. 8 on every ``gp_every``-th update (1-based)."""
        return critic_loss(self.critic, batch.observations, batch.actions, self.td3_target(batch),
                           **self.config.penalty_args(self.updates))

    def actor_loss(self, batch: Batch, data_q: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 4 (W = 1) or Eq. 12 (W of Eq. 10) as a loss to minimise.

        ``data_q`` [2, B]: the critics at the dataset actions for W. :meth:`update` passes the
        values of its critic step, before that step's gradient, as seed 001's listing does
        (``current_Q``); without it they are computed from the current critic."""
        config = self.config
        obs, actions = batch.observations, batch.actions
        pi = self.actor(obs)
        q = self.critic(obs, pi)[0]
        scale = config.alpha / q.abs().mean().detach()
        bc = (pi - actions).pow(2).mean(-1)  # [B]
        if config.constraint_relaxation:
            with torch.no_grad():
                weight = minmax_weight((self.critic(obs, actions) if data_q is None else data_q).mean(0))
            bc = bc * weight
        loss = -scale * q.mean() + bc.mean()
        return loss, {"actor_loss": loss.detach(), "bc_loss": bc.detach().mean(), "actor_q": q.detach().mean()}


class TD3BCPlusPlus(TD3BC):
    """TD3BC++ (seed 001): :class:`TD3BC` with the gradient penalty and constraint relaxation on."""

    name = "td3bc++"
    config_class = TD3BCPlusPlusConfig
