"""DASCO: dual-generator adversarial support-constrained offline RL (seed 000; ALGORITHMS.md "DASCO").

One training step is Algorithm 1, in its order, each part transcribed from Appendix D:

1. **Critic, Eq. 10 / Listing 2.** y = r + gamma (1 - done) min_j Q'_j(s', a'), a' ~ pi(.|s')
   (the current policy, sampled; target critics only); loss sum_j mean (Q_j(s, a) - y)^2.
   Target critics follow by polyak averaging with ``tau``.
2. **Policy = primary generator, Eq. 11 with w (Eq. 63) / Listing 3.** a ~ pi(.|s) reparameterised,
   ratio = min(D(s, a), D(s, a_D)) / D(s, a_D), detached (so ratio <= 1);
   L_pi = -mean(ratio * Q_1(s, a) / w + log D(s, a)).
3. **Auxiliary generator, Eq. 12 / Listing 4.** L_G = BCE(D(s, G(s, z)), 1): the vanilla
   non-saturating GAN loss.
4. **Discriminator, Eq. 13 / Listing 5.** LSGAN on sigmoid outputs with instance noise n:
   L_D = 0.5 (D(s, a_D + n) - 1)^2 + 0.5 D(s, G(s, z) + n)^2 + 0.5 D(s, a_pi + n)^2 (batch means);
   the fakes are fresh samples of the just-updated generators, detached.

Parts (Appendix C): twin Q's of 3 x 256; the policy is a tanh-squashed diagonal Gaussian with
4 x 256 (acting deterministically takes tanh of its mean); the auxiliary generator G(s, z)
and the discriminator D(s, a) each have one hidden layer of 750, and are the zoo's GAN
building blocks (:mod:`behavior_models.gan`), not copies. Adam 3e-4 everywhere.

Instance noise (App. C): Gaussian per action dimension, std 0.3 at the start, annealed by
``instance_noise_schedule`` (the paper gives none; linear to ``instance_noise_final_std`` over
the run's step budget by default) and clamped to magnitude 0.3.

w (App. C): 0.025 on AntMaze, 1.0 on locomotion; left ``None`` it resolves to ``w_maze`` for
dataset ids containing "maze" and ``w_locomotion`` otherwise.

Ablations (Tables 4-6): ``aux_generator=False`` (the discriminator's fakes are the policy's
alone, one generator); ``ratio_weight=False`` (ratio = 1). ``eval_actor="aux_generator"``
acts with the auxiliary generator (deterministic: z = 0) instead of the policy.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from behavior_models.errors import ConfigError, require_at_least
from behavior_models.gan import (NOISE_SCHEDULES, ConditionalGenerator, Discriminator, add_instance_noise,
                                 generator_loss, instance_noise_std, lsgan_discriminator_loss)
from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs, adam, step
from rl.core.buffer import Batch
from rl.core.networks import QEnsemble, TanhGaussianActor, frozen, soft_update
from rl.core.regularizers import critic_loss
from rl.core.tasks import task_family

EVAL_ACTORS = ("policy", "aux_generator")


@dataclass(frozen=True)
class DASCOConfig(AlgoConfig):
    batch_size: int = 256  # not given by seed 000; the usual 256
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # App. C: 3 hidden layers of 256
    policy_hidden: tuple[int, ...] = (256, 256, 256, 256)  # App. C: 4 hidden layers of 256
    gan_hidden: tuple[int, ...] = (750,)  # App. C: discriminator and auxiliary generator, 1 x 750
    aux_noise_dim: int | None = None  # noise size of G(s, z); None = the action dimension
    lr: float = 3e-4  # App. C: Adam 3e-4 for every network
    tau: float = 0.005  # App. C: soft target updates
    w: float | None = None  # Eq. 63's w; None resolves from the dataset id (w_maze / w_locomotion)
    w_maze: float = 0.025  # App. C: AntMaze
    w_locomotion: float = 1.0  # App. C: MuJoCo locomotion
    instance_noise_std: float = 0.3  # App. C: initial std
    instance_noise_final_std: float = 0.0  # std reached at the end of the anneal (our choice)
    instance_noise_schedule: str = "linear"  # one of behavior_models.gan.NOISE_SCHEDULES (not in the paper)
    instance_noise_clamp: float = 0.3  # App. C: maximum magnitude of the noise
    instance_noise_steps: int | None = None  # anneal length; None resolves to the run's step budget
    aux_generator: bool = True  # False: the no-auxiliary-generator ablation (Tables 4-6)
    ratio_weight: bool = True  # False: the no-probability-ratio ablation (Tables 4-6)
    eval_actor: str = "policy"  # policy | aux_generator (evaluate the auxiliary generator as a policy)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, {"aux_noise_dim": 1})  # None passes: the action dimension
        low = [f"DASCOConfig.{name} must be > 0 (Eq. 63 divides Q by it), got {value}"
               for name, value in (("w", self.w), ("w_maze", self.w_maze), ("w_locomotion", self.w_locomotion))
               if value is not None and not value > 0]
        if low:
            raise ConfigError("; ".join(low))


def ratio_weight(policy_logit: Tensor, data_logit: Tensor) -> Tensor:
    """min(D(s, a), D(s, a_D)) / D(s, a_D), detached (Listing 3): in (0, 1].

    From the discriminator's logits: D = sigmoid(logit) is increasing, so min(D(s, a), D(s, a_D))
    = sigmoid(min of the logits), and the ratio is exp(log sigmoid(min) - log sigmoid(data logit)).
    The same number, except where D(s, a_D) underflows to 0 in float32 (a logit below about -88):
    there the quotient of probabilities is 0/0 = nan, and this stays finite."""
    smaller = torch.minimum(policy_logit, data_logit)
    return torch.exp(F.logsigmoid(smaller) - F.logsigmoid(data_logit)).detach()


class DASCO(Algorithm):
    name = "dasco"
    config_class = DASCOConfig
    behavior_kind = "none"
    # Seed 000, App. C: locomotion rewards divided by the return range, "similar to" IQL [20], whose code
    # also multiplies by 1000; return_range keeps that factor. With w = 1 the scale sets Q/w against log D.
    locomotion_reward = "return_range"
    acting_fields = ("eval_actor",)  # a trained run can act with either generator

    @classmethod
    def resolve_config(cls, config: DASCOConfig, dataset_id: str, steps: int) -> DASCOConfig:
        changes = {}
        if config.w is None:
            changes["w"] = config.w_maze if task_family(dataset_id) == "antmaze" else config.w_locomotion
        if config.instance_noise_steps is None:
            changes["instance_noise_steps"] = int(steps)
        return dataclasses.replace(config, **changes) if changes else config

    def __init__(self, config: DASCOConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        super().__init__(config, obs_dim, act_dim, device, behavior)
        if config.instance_noise_schedule not in NOISE_SCHEDULES:
            raise ConfigError(f"DASCO instance_noise_schedule={config.instance_noise_schedule!r}; "
                              f"choose one of {NOISE_SCHEDULES}")
        self.w = config.w if config.w is not None else config.w_locomotion
        self.critic = QEnsemble(obs_dim, act_dim, config.critic_hidden, 2).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.policy = TanhGaussianActor(obs_dim, act_dim, config.policy_hidden).to(self.device)
        self.discriminator = Discriminator(obs_dim, act_dim, config.gan_hidden).to(self.device)
        self.optimizers = {"critic": adam(self.critic.parameters(), config.lr),
                           "policy": adam(self.policy.parameters(), config.lr),
                           "discriminator": adam(self.discriminator.parameters(), config.lr)}
        self.aux_generator = None
        if config.aux_generator:
            noise_dim = act_dim if config.aux_noise_dim is None else config.aux_noise_dim
            self.aux_generator = ConditionalGenerator(obs_dim, act_dim, noise_dim, config.gan_hidden).to(self.device)
            self.optimizers["aux_generator"] = adam(self.aux_generator.parameters(), config.lr)
        self.check_acting(config)

    def check_acting(self, config: DASCOConfig) -> None:
        if config.eval_actor not in EVAL_ACTORS:
            raise ConfigError(f"DASCO eval_actor={config.eval_actor!r}; choose one of {EVAL_ACTORS}")
        if config.eval_actor == "aux_generator" and self.aux_generator is None:
            raise ConfigError("DASCO eval_actor=aux_generator needs the auxiliary generator (aux_generator=true)")

    def noise_std(self) -> float:
        """The instance-noise std at this update. ``instance_noise_steps`` is the run's step budget once
        the trainer resolves it; left unset (an algorithm built outside the trainer), the anneal lasts
        one update."""
        c = self.config
        total = c.instance_noise_steps if c.instance_noise_steps is not None else 1
        return instance_noise_std(self.updates, total, c.instance_noise_std, c.instance_noise_final_std,
                                  c.instance_noise_schedule, c.instance_noise_clamp)

    # ------------------------------------------------------------------ the four losses
    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Listing 2 (Eq. 10)."""
        with torch.no_grad():
            next_actions = self.policy(batch.next_observations)
            q_next = self.critic_target(batch.next_observations, next_actions).min(0).values
            target = batch.rewards + self.config.gamma * (1.0 - batch.dones) * q_next
        loss, metrics, _ = critic_loss(self.critic, batch.observations, batch.actions, target)  # qf1_loss + qf2_loss
        return loss, metrics

    def policy_loss(self, obs: Tensor, data_actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Listing 3 (Eq. 11 with w, Eq. 63)."""
        actions = self.policy(obs)
        q = self.critic(obs, actions)[0]
        logit = self.discriminator(obs, actions, return_logit=True)
        if self.config.ratio_weight:
            ratio = ratio_weight(logit, self.discriminator(obs, data_actions, return_logit=True))
        else:
            ratio = torch.ones_like(q)
        loss = -(ratio * q / self.w + F.logsigmoid(logit)).mean()
        return loss, {"policy_loss": loss.detach(), "ratio_mean": ratio.mean(), "actor_q": q.detach().mean()}

    def aux_generator_loss(self, obs: Tensor) -> Tensor:
        """Listing 4 (Eq. 12): BCE towards the real label."""
        return generator_loss(self.discriminator(obs, self.aux_generator(obs), return_logit=True))

    def discriminator_loss(self, obs: Tensor, data_actions: Tensor, noise_std: float) -> Tensor:
        """Listing 5 (Eq. 13): LSGAN, real = dataset actions, fakes = auxiliary generator and policy."""
        clamp = self.config.instance_noise_clamp

        def logits(actions: Tensor) -> Tensor:
            return self.discriminator(obs, add_instance_noise(actions.detach(), noise_std, clamp), return_logit=True)

        with torch.no_grad():
            fakes = [self.policy(obs)] if self.aux_generator is None else [self.aux_generator(obs), self.policy(obs)]
        return lsgan_discriminator_loss(logits(data_actions), *(logits(fake) for fake in fakes))

    # ------------------------------------------------------------------ one step, Algorithm 1
    def update(self, batch: Batch) -> dict[str, Tensor | float]:
        obs, data_actions = batch.observations, batch.actions
        q_loss, metrics = self.critic_loss(batch)
        step(self.optimizers["critic"], q_loss)
        soft_update(self.critic_target, self.critic, self.config.tau)
        with frozen(self.critic, self.discriminator):  # trained through, not trained here
            policy_loss, policy_metrics = self.policy_loss(obs, data_actions)
            step(self.optimizers["policy"], policy_loss)
            metrics.update(policy_metrics)
            if self.aux_generator is not None:
                aux_loss = self.aux_generator_loss(obs)
                step(self.optimizers["aux_generator"], aux_loss)
                metrics["aux_generator_loss"] = aux_loss.detach()
        noise_std = self.noise_std()
        d_loss = self.discriminator_loss(obs, data_actions, noise_std)
        step(self.optimizers["discriminator"], d_loss)
        self.updates += 1
        return {**metrics, "discriminator_loss": d_loss.detach(), "instance_noise_std": noise_std}

    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        if self.config.eval_actor == "aux_generator":
            noise = None if not deterministic else torch.zeros(obs.shape[0], self.aux_generator.noise_dim,
                                                               device=obs.device, dtype=obs.dtype)
            return self.aux_generator(obs, noise)
        return self.policy(obs, deterministic=deterministic)
