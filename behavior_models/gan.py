"""A conditional GAN behavior model: a generator to sample, a discriminator for the support.

Parts (sizes from seed 000, Appendix C: one hidden layer of 750 for both):

* generator G(s, z) -> tanh(...) in (-1, 1)^A, z ~ N(0, I_noise_dim); ``sample`` draws from it;
* discriminator D(s, a) = sigmoid(logit(s, a)); ``support_mask`` thresholds it.

``log_prob`` is **unnormalised**: ``log D / (1 - D)``, i.e. the discriminator's logit, a log
density-ratio score. It integrates to nothing in particular; never read it as a density in
nats. It is differentiable in the action (autograd), so ``grad_log_prob`` is offered, as the
gradient of that score.

Training, one step (seed 000, Appendix D, Listings 4 and 5):

1. discriminator, LSGAN loss on sigmoid outputs (Listing 5):
   ``0.5 (D(s, a + n) - 1)^2 + 0.5 D(s, G(s, z) + n)^2 + w_u * 0.5 D(s, u + n)^2``, where n is
   instance noise and u ~ U[-1, 1]^A are **uniform random actions used as extra negatives**.
   Why: a discriminator trained only against a good generator converges to D = 1/2 on the
   data and is never shown anything off the support, so its value there is arbitrary and it
   carries no support information. With uniform negatives of weight w_u the optimum is
   ``D* = p / (p + p_G + w_u U)``, which is ~1/(2 + ...) on the data and -> 0 where the data
   density p vanishes: a support detector. ``uniform_negative_weight = 0`` gives the plain GAN.
2. generator, the vanilla non-saturating GAN loss (Listing 4): BCE(D(s, G(s, z)), 1), plus
   ``mode_seeking_weight`` times the mode-seeking term of MSGAN (Mao et al. 2019, Eq. 3):
   ``1 / (mean|G(s, z1) - G(s, z2)| / mean|z1 - z2| + eps)``, two noise draws per state.
   Why: this discriminator never learns to penalise samples narrower than the data (near the
   data its logit is at most a peak at the conditional mean, nearly flat across the data's
   spread), so the adversarial loss alone pulls every G(s, z) to the mode within a few hundred
   steps, and once G ignores z no gradient reaches the noise path again. Measured on the
   conditional Gaussian of tests/behavior_models/test_backends.py (seeds 0-2): without the
   term the samples' std is 0.08-0.10 of the data's, with weight 0.02 0.93-0.94, at the same
   mean error and support F1; making D stronger instead restored the spread only at the cost
   of the mean or the support. The weight sets the spread (0.01: 0.87, 0.03: 1.0) and depends
   on the data's scale. ``mode_seeking_weight = 0`` gives the paper's generator loss.

Instance noise (Appendix C): Gaussian, independent per action dimension, std starting at
``instance_noise_std`` = 0.3, annealed by ``instance_noise_schedule`` to
``instance_noise_final_std`` at the end of the fit, and clamped to magnitude
``instance_noise_clamp`` = 0.3. The paper gives no schedule; linear is the default here.

Boundary mass: the fit sees actions clipped to [-1+delta, 1-delta] (``boundary_delta``). The
discriminator is an MLP on any action, so actions exactly at +-1 get a finite score close to
their clipped neighbours'; generator outputs never reach +-1 (tanh).

The building blocks (:class:`ConditionalGenerator`, :class:`Discriminator`,
:func:`lsgan_discriminator_loss`, :func:`generator_loss`, :func:`instance_noise_std`,
:func:`add_instance_noise`) work on whatever observations they are given, so DASCO (rl/)
reuses them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.errors import ConfigError, require_at_least
from behavior_models.nets import adam, mlp

NOISE_SCHEDULES = ("linear", "cosine", "exponential", "constant")


# ---------------------------------------------------------------------- building blocks
class Discriminator(nn.Module):
    """D(s, a): an MLP on the concatenated state and action; returns logits or probabilities."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (750,)) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1)

    def forward(self, obs: Tensor, act: Tensor, return_logit: bool = False) -> Tensor:
        logit = self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)
        return logit if return_logit else torch.sigmoid(logit)


class ConditionalGenerator(nn.Module):
    """G(s, z) = tanh(MLP([s, z])), z ~ N(0, I_noise_dim): a state-conditioned implicit policy."""

    def __init__(self, obs_dim: int, act_dim: int, noise_dim: int, hidden: Sequence[int] = (750,)) -> None:
        super().__init__()
        self.noise_dim = int(noise_dim)
        self.net = mlp(obs_dim + self.noise_dim, hidden, act_dim)

    def forward(self, obs: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = torch.randn(obs.shape[0], self.noise_dim, device=obs.device, dtype=obs.dtype)
        return torch.tanh(self.net(torch.cat([obs, noise], dim=-1)))

    def sample(self, obs: Tensor, n: int) -> Tensor:
        """[B, n, A] generator outputs for each state."""
        actions = self(obs.repeat_interleave(n, dim=0))
        return actions.reshape(obs.shape[0], n, -1)


def lsgan_discriminator_loss(real_logits: Tensor, *fake_logits: Tensor, fake_weights: Sequence[float] | None = None) -> Tensor:
    """LSGAN loss on sigmoid outputs (seed 000, Listing 5): 0.5 MSE(D_real, 1) + sum 0.5 w MSE(D_fake, 0)."""
    weights = fake_weights if fake_weights is not None else [1.0] * len(fake_logits)
    loss = 0.5 * F.mse_loss(torch.sigmoid(real_logits), torch.ones_like(real_logits))
    for logits, weight in zip(fake_logits, weights):
        loss = loss + weight * 0.5 * F.mse_loss(torch.sigmoid(logits), torch.zeros_like(logits))
    return loss


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Vanilla non-saturating generator loss (seed 000, Listing 4): BCE(D(G(s)), real label)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def mode_seeking_loss(act_1: Tensor, act_2: Tensor, noise_1: Tensor, noise_2: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019, Eq. 3), to be minimised by the generator:
    1 / (mean|a1 - a2| / mean|z1 - z2| + eps), where a_i = G(s, z_i) at the same states."""
    ratio = (act_1 - act_2).abs().mean() / (noise_1 - noise_2).abs().mean()
    return 1.0 / (ratio + eps)


def instance_noise_std(step: int, total_steps: int, initial: float = 0.3, final: float = 0.0,
                       schedule: str = "linear", clamp: float = 0.3) -> float:
    """Std of the instance noise at ``step``: from ``initial`` to ``final`` over ``total_steps``.

    ``linear`` and ``cosine`` interpolate; ``exponential`` decays geometrically to
    max(final, 1e-3 * initial); ``constant`` keeps ``initial``. The result is clamped to
    ``clamp`` (Appendix C: "clamp the instance noise to a maximum of 0.3").
    """
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "linear":
        std = initial + (final - initial) * progress
    elif schedule == "cosine":
        std = final + (initial - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "exponential":
        floor = max(final, 1e-3 * initial)
        std = initial * (floor / initial) ** progress if initial > 0 else 0.0
    elif schedule == "constant":
        std = initial
    else:
        raise ConfigError(f"instance-noise schedule must be one of {NOISE_SCHEDULES}, got {schedule!r}")
    return min(std, clamp)


def add_instance_noise(act: Tensor, std: float, clamp: float = 0.3) -> Tensor:
    """``act`` plus N(0, std^2) noise per dimension, each draw clamped to [-clamp, clamp]."""
    if std <= 0:
        return act
    return act + (torch.randn_like(act) * std).clamp(-clamp, clamp)


# ---------------------------------------------------------------------- the behavior model
@dataclass(frozen=True)
class GANConfig(BehaviorModelConfig):
    hidden: tuple[int, ...] = (750,)  # generator and discriminator (seed 000, App. C)
    noise_dim: int | None = None  # generator noise size; None = the action dimension
    lr: float = 3e-4  # Adam, both networks (seed 000, App. C)
    instance_noise_std: float = 0.3  # initial std (App. C)
    instance_noise_final_std: float = 0.0  # std at the end of the fit
    instance_noise_schedule: str = "linear"  # one of NOISE_SCHEDULES; the paper only says "annealed"
    instance_noise_clamp: float = 0.3  # max magnitude of the noise (App. C)
    uniform_negative_weight: float = 1.0  # weight of the uniform-random-action negatives (0: plain GAN)
    mode_seeking_weight: float = 0.02  # MSGAN term in the generator loss (0: the paper's loss); see docstring

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, {"noise_dim": 1})  # None passes: the action dimension
        if self.instance_noise_schedule not in NOISE_SCHEDULES:
            raise ConfigError(f"instance_noise_schedule must be one of {NOISE_SCHEDULES}, "
                              f"got {self.instance_noise_schedule!r}")
        if self.mode_seeking_weight < 0:
            raise ConfigError(f"mode_seeking_weight must be >= 0, got {self.mode_seeking_weight}")
        if not self.uniform_negative_weight >= 0:  # < 0 would train D to accept uniform actions
            raise ConfigError(f"uniform_negative_weight must be >= 0, got {self.uniform_negative_weight}")


class GANBehaviorModel(BehaviorModel):
    name = "gan"
    config_class = GANConfig
    log_prob_kind = "unnormalized"
    differentiable_log_prob = True
    reparameterized_sample = True

    def __init__(self, obs_dim: int, act_dim: int, config: GANConfig) -> None:
        super().__init__(obs_dim, act_dim, config)
        self.generator = ConditionalGenerator(obs_dim, act_dim, act_dim if config.noise_dim is None else config.noise_dim,
                                              config.hidden)
        self.discriminator = Discriminator(obs_dim, act_dim, config.hidden)

    def _log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """log D/(1 - D) = the discriminator's logit: an unnormalised log density-ratio."""
        return self.discriminator(obs, act, return_logit=True)

    def _sample(self, obs: Tensor, n: int) -> Tensor:
        return self.generator.sample(obs, n)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": adam(self.discriminator.parameters(), lr=self.config.lr),
                "generator": adam(self.generator.parameters(), lr=self.config.lr)}

    def noise_std(self, step: int) -> float:
        c = self.config
        return instance_noise_std(step, c.steps, c.instance_noise_std, c.instance_noise_final_std,
                                  c.instance_noise_schedule, c.instance_noise_clamp)

    def training_step(self, obs: Tensor, act: Tensor, step: int, optimizers) -> dict[str, Tensor]:
        std, clamp = self.noise_std(step), self.config.instance_noise_clamp
        # 1. discriminator (Listing 5, plus the uniform negatives).
        fake = self.generator(obs).detach()
        uniform = torch.rand_like(act) * 2.0 - 1.0
        d_loss = lsgan_discriminator_loss(
            self.discriminator(obs, add_instance_noise(act, std, clamp), return_logit=True),
            self.discriminator(obs, add_instance_noise(fake, std, clamp), return_logit=True),
            self.discriminator(obs, add_instance_noise(uniform, std, clamp), return_logit=True),
            fake_weights=(1.0, self.config.uniform_negative_weight))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        # 2. generator (Listing 4), plus the mode-seeking term on two noise draws per state.
        weight = self.config.mode_seeking_weight
        if weight > 0:
            noise = torch.randn(2 * obs.shape[0], self.generator.noise_dim, device=obs.device, dtype=obs.dtype)
            obs_2 = torch.cat([obs, obs])
            fake = self.generator(obs_2, noise)
            g_loss = generator_loss(self.discriminator(obs_2, fake, return_logit=True))
            g_loss = g_loss + weight * mode_seeking_loss(*fake.chunk(2), *noise.chunk(2))
        else:
            g_loss = generator_loss(self.discriminator(obs, self.generator(obs), return_logit=True))
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
