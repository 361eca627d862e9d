"""TD3+BC and TD3BC++ (seed 001, Eq. 4, 8, 10 and 12; ALGORITHMS.md "BEAR and BEAR++ / TD3BC++").

TD3 (twin critics, target policy smoothing, delayed actor and target updates) with a
behaviour-cloning actor loss, Eq. 4 written as a loss:

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

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs, adam, step
from rl.core.buffer import Batch
from rl.core.networks import DeterministicActor, QEnsemble, frozen, soft_update
from rl.core.regularizers import critic_loss, minmax_weight, td3_target


@dataclass(frozen=True)
class TD3BCConfig(AlgoConfig):
    batch_size: int = 256  # TD3+BC (Fujimoto & Gu 2021)
    hidden: tuple[int, ...] = (256, 256)  # actor and critics (TD3+BC)
    actor_lr: float = 3e-4  # TD3+BC
    critic_lr: float = 3e-4  # TD3+BC
    tau: float = 0.005  # polyak rate of the target networks (TD3+BC)
    policy_noise: float = 0.2  # target policy smoothing std (TD3)
    noise_clip: float = 0.5  # target policy smoothing clip (TD3)
    policy_freq: int = 2  # actor and target updates every this many critic updates (TD3)
    alpha: float = 2.5  # Eq. 4's alpha (seed 001, Table 7: 2.5 locomotion; 0.02-0.5 Adroit)
    gradient_penalty: float = 0.0  # lambda_GP of Eq. 8; 0 = off (Table 7: 1; 0.1 for relocate)
    gp_k: float = 1.0  # the one-sided threshold k of Eq. 8
    gp_actions: int = 16  # uniform random actions per state (App. C.2 listing)
    gp_every: int = 5  # the penalty applies every N-th update (Sec. 4.1: N = 5)
    constraint_relaxation: bool = False  # weight the BC term by Eq. 10's W(s, a) (Eq. 12)


@dataclass(frozen=True)
class TD3BCPlusPlusConfig(TD3BCConfig):
    """TD3BC++: TD3+BC with both options of seed 001 on."""

    gradient_penalty: float = 1.0  # Table 7 (TD3BC++ lambda_GP, locomotion and most Adroit tasks)
    constraint_relaxation: bool = True  # Eq. 12


class TD3BC(Algorithm):
    name = "td3bc"
    config_class = TD3BCConfig
    behavior_kind = "none"

    def __init__(self, config: TD3BCConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        super().__init__(config, obs_dim, act_dim, device, behavior)
        self.actor = DeterministicActor(obs_dim, act_dim, config.hidden).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden, 2).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {"actor": adam(self.actor.parameters(), config.actor_lr),
                           "critic": adam(self.critic.parameters(), config.critic_lr)}
        self._actor_metrics: dict[str, Tensor] = {}

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """TD3's loss, plus lambda_GP times Eq. 8 on every ``gp_every``-th update (1-based); also
        the step's detached Q_j(s, a) [2, B]."""
        config = self.config
        target = td3_target(self.actor_target, self.critic_target, batch.rewards, batch.next_observations,
                            batch.dones, config.gamma, config.policy_noise, config.noise_clip)
        return critic_loss(self.critic, batch.observations, batch.actions, target, config.gradient_penalty,
                           (self.updates + 1) % config.gp_every == 0, config.gp_actions, config.gp_k)

    def actor_loss(self, obs: Tensor, actions: Tensor, data_q: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 4 (W = 1) or Eq. 12 (W of Eq. 10) as a loss to minimise.

        ``data_q`` [2, B]: the critics at the dataset actions for W. :meth:`update` passes the
        values of its critic step, before that step's gradient, as seed 001's listing does
        (``current_Q``); without it they are computed from the current critic."""
        config = self.config
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

    def update(self, batch: Batch) -> dict[str, Tensor]:
        q_loss, metrics, data_q = self.critic_loss(batch)
        step(self.optimizers["critic"], q_loss)
        self.updates += 1
        if self.updates % self.config.policy_freq == 0:
            with frozen(self.critic):  # the actor trains through Q; the critic's weights take no gradient
                loss, self._actor_metrics = self.actor_loss(batch.observations, batch.actions, data_q)
                step(self.optimizers["actor"], loss)
            soft_update(self.critic_target, self.critic, self.config.tau)
            soft_update(self.actor_target, self.actor, self.config.tau)
        return {**metrics, **self._actor_metrics}

    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.actor(obs)  # TD3's actor is deterministic


class TD3BCPlusPlus(TD3BC):
    """TD3BC++ (seed 001): :class:`TD3BC` with the gradient penalty and constraint relaxation on."""

    name = "td3bc++"
    config_class = TD3BCPlusPlusConfig
