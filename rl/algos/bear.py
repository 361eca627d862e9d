"""BEAR and BEAR++ (seed 001, Eq. 5, 8, 10 and 11; ALGORITHMS.md "BEAR and BEAR++ / TD3BC++").

BEAR-QL keeps a tanh-Gaussian policy's samples close to the behaviour policy's in MMD
(Eq. 5), with a learned Lagrange multiplier alpha:

* **Critic.** y = r + gamma (1 - done) max_{i<=m} [lam min_j Q'_j(s', a'_i) + (1 - lam) max_j Q'_j(s', a'_i)],
  a'_i ~ pi'(.|s'), m = ``target_samples`` = 10, lam = 0.75 (the soft clipped double-Q of BEAR);
  loss sum_j E_D[(Q_j(s, a) - y)^2].
* **Actor.** With n = ``mmd_samples`` policy samples a_i ~ pi(.|s) and n behaviour samples
  b_i ~ beta(.|s) from the fitted behavior model (``--behavior DIR``, any backend of the zoo;
  BEAR's own choice is the CVAE):
  L_pi = E_s[-min_j mean_i Q_j(s, a_i) + alpha * (MMD(b, a) * W - eps)]. During the warm start
  (the first ``warmup_steps`` updates) the Q term is dropped: L_pi = E_s[alpha * MMD * W].
* **Lagrange multiplier.** log alpha follows dual ascent on alpha * (E[MMD * W] - eps)
  (Adam, ``alpha_lr``), clamped to [``log_alpha_min``, ``log_alpha_max``] after each step.
  The biased estimator counts each sample against itself, so with n = 4 the MMD stays above zero
  even when pi = beta: for Gaussian samples of std s per dimension it averages 0.05 (2-D, s = 0.1),
  0.07 (2-D, 0.2), 0.09 (6-D, 0.1) and 0.13 (6-D, 0.2) at sigma = 20. Where that floor exceeds
  eps = 0.05, alpha climbs to its clamp, as it does in BEAR's and d3rlpy's code with these
  defaults; raise ``mmd_samples`` or ``epsilon`` to keep the constraint attainable.
* **Acting.** The action of highest Q_1 among ``eval_samples`` policy samples (argmax-Q); the
  sampled action otherwise.

The MMD is :func:`~rl.core.regularizers.mmd` (kernel divisor 2 sigma). It is computed on the
actions in the box (the contract's behaviour samples are clipped), not on BEAR's pre-tanh
actions, so sigma is a config field to tune rather than BEAR's number.

**BEAR++** (seed 001) adds, as flags, both on in the ``bear++`` preset:

* ``gradient_penalty`` = lambda_GP > 0: Eq. 8 on both critics, 16 uniform random actions per
  state, every 5th update (:func:`~rl.core.regularizers.gradient_penalty`);
* ``constraint_relaxation``: Eq. 11's W(s, beta(s)), the batch min-max normalised (Eq. 10)
  critic value of the behaviour samples (the two critics' mean, averaged over the n samples),
  in [0, 1], without gradient. It multiplies the MMD in the actor loss and in alpha's dual step.

Differences from the original implementation, on purpose: the behaviour model is fitted
beforehand and frozen (BEAR trains its CVAE in the same loop); no ensemble-variance term.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from behavior_models.errors import ConfigError, require_at_least
from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs, adam, step
from rl.core.buffer import Batch
from rl.core.networks import QEnsemble, TanhGaussianActor, frozen, soft_update
from rl.core.regularizers import MMD_KERNELS, PlusPlusOptions, critic_loss, minmax_weight, mmd, table7_defaults
from rl.core.tasks import adroit_task, fill_unset_fields


@dataclass(frozen=True)
class BEARConfig(PlusPlusOptions, AlgoConfig):
    batch_size: int = 256  # BEAR / d3rlpy
    hidden: tuple[int, ...] = (256, 256)  # actor and critics (d3rlpy's BEAR)
    actor_lr: float = 1e-4  # ALGORITHMS.md "BEAR": policy 1e-4
    critic_lr: float = 3e-4  # ALGORITHMS.md "BEAR": Q 3e-4
    tau: float = 0.005  # polyak rate of the target actor and critics
    target_samples: int = 10  # policy samples at s' for the target (BEAR, after BCQ)
    target_lambda: float = 0.75  # lam * min + (1 - lam) * max over the two Q's (BEAR)
    mmd_samples: int = 4  # n policy and n behaviour samples per state (ALGORITHMS.md: 4-10; d3rlpy 4)
    # laplacian | gaussian (ALGORITHMS.md "BEAR"). None resolves from the dataset id: gaussian on the
    # four Adroit tasks, laplacian elsewhere (seed 001, App. C, "BEAR-QL").
    mmd_kernel: str | None = None
    mmd_sigma: float = 20.0  # kernel width, divisor 2 sigma (BEAR's 20 on pre-tanh actions; tune)
    epsilon: float = 0.05  # the MMD threshold of Eq. 5 (seed 001: 0.05)
    alpha_lr: float = 1e-3  # Adam on log alpha (ALGORITHMS.md "BEAR")
    initial_log_alpha: float = 0.0  # alpha = 1 at the start (d3rlpy initial_alpha = 1)
    log_alpha_min: float = -5.0  # clamp of log alpha (ALGORITHMS.md "BEAR")
    log_alpha_max: float = 10.0
    warmup_max_steps: int = 40_000  # BEAR's MMD-only warm start (ALGORITHMS.md "BEAR")
    warmup_fraction: float = 0.1  # ... capped at this fraction of the step budget, so short runs do RL
    warmup_steps: int | None = None  # resolved before training: min(warmup_max_steps, fraction * steps)
    eval_samples: int = 10  # policy samples scored by Q_1 when acting (BEAR: 10; d3rlpy 100)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, {"target_samples": 1, "mmd_samples": 1, "eval_samples": 1})
        if not self.mmd_sigma > 0:
            raise ConfigError(f"{type(self).__name__}.mmd_sigma must be > 0 (the MMD kernel divides by it), "
                              f"got {self.mmd_sigma}")


@dataclass(frozen=True)
class BEARPlusPlusConfig(BEARConfig):
    """BEAR++: BEAR with both options of seed 001 on."""

    gradient_penalty: float | None = None  # resolves from the dataset id: Table 7's lambda_GP (1; 0.1 relocate)
    constraint_relaxation: bool = True  # Eq. 11


def task_defaults(dataset_id: str) -> dict[str, object]:
    """Per-dataset defaults: Table 7's lambda_GP and the MMD kernel of seed 001's BEAR-QL runs."""
    kernel = "gaussian" if adroit_task(dataset_id) else "laplacian"
    return {"gradient_penalty": table7_defaults(dataset_id)["gradient_penalty"], "mmd_kernel": kernel}


class BEAR(Algorithm):
    name = "bear"
    config_class = BEARConfig
    behavior_kind = "model"

    @classmethod
    def resolve_config(cls, config: BEARConfig, dataset_id: str, steps: int) -> BEARConfig:
        config = fill_unset_fields(config, task_defaults(dataset_id))
        if config.warmup_steps is not None:
            return config
        warmup = min(config.warmup_max_steps, int(config.warmup_fraction * steps))
        return dataclasses.replace(config, warmup_steps=warmup)

    def __init__(self, config: BEARConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        # Built without a dataset id: the locomotion column (the warm start stays unset: see warmup_steps).
        config = fill_unset_fields(config, task_defaults(""))
        super().__init__(config, obs_dim, act_dim, device, behavior)
        if self.behavior.model is None:
            raise ConfigError("BEAR needs a behavior model to sample from: --behavior DIR (from `bm fit`, e.g. "
                              "--model cvae)")
        if config.mmd_kernel not in MMD_KERNELS:
            raise ConfigError(f"BEAR mmd_kernel={config.mmd_kernel!r}; choose one of {MMD_KERNELS}")
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.hidden).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden, 2).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(config.initial_log_alpha, device=self.device))
        self.optimizers = {"actor": adam(self.actor.parameters(), config.actor_lr),
                           "critic": adam(self.critic.parameters(), config.critic_lr),
                           "alpha": adam([self.log_alpha], config.alpha_lr)}

    @property
    def warmup_steps(self) -> int:
        # Without a step budget (update() called directly), the uncapped warm start applies.
        c = self.config
        return c.warmup_steps if c.warmup_steps is not None else c.warmup_max_steps

    def critic_target_value(self, batch: Batch) -> Tensor:
        """y of the soft clipped double-Q target, max over ``target_samples`` policy samples [B]."""
        c = self.config
        with torch.no_grad():
            next_actions = self.actor_target.sample(batch.next_observations, c.target_samples)  # [B, m, A]
            next_obs = batch.next_observations.unsqueeze(1).expand(-1, c.target_samples, -1)
            q = self.critic_target(next_obs, next_actions)  # [2, B, m]
            soft = c.target_lambda * q.min(0).values + (1.0 - c.target_lambda) * q.max(0).values
            return batch.rewards + c.gamma * (1.0 - batch.dones) * soft.max(1).values

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        loss, metrics, _ = critic_loss(self.critic, batch.observations, batch.actions, self.critic_target_value(batch),
                                       **c.penalty_args(self.updates))
        return loss, metrics

    def constraint(self, obs: Tensor, raw_obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """(MMD(beta(s), pi(s)), the weight W(s, beta(s))), each per state [B]; W = 1 without relaxation."""
        c = self.config
        with torch.no_grad():
            behavior = self.behavior.model.sample(raw_obs, c.mmd_samples)  # [B, n, A]
            if c.constraint_relaxation:
                states = obs.unsqueeze(1).expand(-1, c.mmd_samples, -1)
                weight = minmax_weight(self.critic(states, behavior).mean((0, 2)))
            else:
                weight = torch.ones(obs.shape[0], device=obs.device)
        return mmd(behavior, actions, c.mmd_kernel, c.mmd_sigma), weight

    def actor_loss(self, obs: Tensor, raw_obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(L_pi, the constraint E[MMD * W] detached, metrics) for states ``obs``."""
        c = self.config
        actions = self.actor.sample(obs, c.mmd_samples)  # [B, n, A], reparameterised
        divergence, weight = self.constraint(obs, raw_obs, actions)
        constraint = divergence * weight  # [B]
        alpha = self.log_alpha.exp().detach()
        if self.updates < self.warmup_steps:
            q_term = torch.zeros((), device=obs.device)
            loss = (alpha * constraint).mean()
        else:
            q = self.critic(obs.unsqueeze(1).expand(-1, c.mmd_samples, -1), actions)  # [2, B, n]
            q_term = q.mean(2).min(0).values.mean()
            loss = -q_term + (alpha * (constraint - c.epsilon)).mean()
        mean_constraint = constraint.detach().mean()
        return loss, mean_constraint, {"actor_loss": loss.detach(), "mmd": divergence.detach().mean(),
                                       "constraint": mean_constraint, "actor_q": q_term.detach(), "alpha": alpha}

    def alpha_loss(self, mean_constraint: Tensor) -> Tensor:
        """Dual ascent on alpha * (E[MMD * W] - eps): minimise its negative."""
        return -(self.log_alpha.exp() * (mean_constraint - self.config.epsilon))

    def update(self, batch: Batch) -> dict[str, Tensor]:
        c = self.config
        q_loss, metrics = self.critic_loss(batch)
        step(self.optimizers["critic"], q_loss)
        with frozen(self.critic):  # the actor trains through Q; the critic's weights take no gradient
            actor_loss, mean_constraint, actor_metrics = self.actor_loss(batch.observations, batch.raw_observations)
            step(self.optimizers["actor"], actor_loss)
        step(self.optimizers["alpha"], self.alpha_loss(mean_constraint))
        with torch.no_grad():
            self.log_alpha.clamp_(c.log_alpha_min, c.log_alpha_max)
        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.actor_target, self.actor, c.tau)
        self.updates += 1
        return {**metrics, **actor_metrics}

    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        if not deterministic:
            return self.actor(obs)
        actions = self.actor.sample(obs, self.config.eval_samples)  # [B, k, A]
        q = self.critic(obs.unsqueeze(1).expand(-1, actions.shape[1], -1), actions)[0]  # [B, k]
        return actions.gather(1, q.argmax(1)[:, None, None].expand(-1, 1, actions.shape[2])).squeeze(1)


class BEARPlusPlus(BEAR):
    """BEAR++ (seed 001): :class:`BEAR` with the gradient penalty and constraint relaxation on."""

    name = "bear++"
    config_class = BEARPlusPlusConfig
