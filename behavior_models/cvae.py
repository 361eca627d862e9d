"""A conditional VAE behavior model, as BCQ, BEAR and SPOT use it (ALGORITHMS.md, "CVAE").

Model (seed 004, SPOT slides, "Explicit estimation of behavior density")::

    p(a|s) = int p(a|z,s) p(z) dz,   p(z) = N(0, I),   z in R^(2A)
    q(z|s,a) = N(mu(s,a), diag(sigma(s,a)^2)),  log sigma clamped to [log_std_min, log_std_max]
    p(a|z,s) = N(a; tanh(dec(s,z)), decoder_std^2 I)

with Z = ``latent_factor`` * A latent dims (SPOT's 2A by default).

Training loss (BCQ/SPOT): ``MSE(tanh(dec(s,z)), a) + beta * KL(q || p)``, both averaged over
dimensions (MSE over the A action dims, KL over the Z latent dims), z ~ q by the
reparameterisation trick.

Decoder std, derived. With a Gaussian decoder of std sigma_d, the negative one-sample ELBO is
``||a - mu||^2 / (2 sigma_d^2) + KL + A log(sigma_d sqrt(2 pi))``. The loss above is
``||a - mu||^2 / A + (beta / Z) KL``; multiplying it by ``Z / beta`` gives
``(Z / (beta A)) ||a - mu||^2 + KL``, which is the negative ELBO exactly when
``1 / (2 sigma_d^2) = Z / (beta A)``, i.e. ``sigma_d = sqrt(beta A / 2Z)``: ``sqrt(beta / 4)``
at Z = 2A (0.354 at beta = 0.5). So the training loss is ``(beta / Z) * (-ELBO in nats) + const``:
the density this module reports is the one the network was actually trained to fit, and
:attr:`decoder_std` is a derived quantity, not a separate knob. A sharper density needs a
smaller ``kl_weight``.

Units (ALGORITHMS.md, "CVAE"): SPOT's lambda multiplies *that loss*. Applied to a
log-density in nats (what :meth:`log_prob` returns), the same penalty is
``lambda_nats = lambda * beta / Z`` (``lambda * beta / (2A)`` for SPOT's CVAE); see
:func:`spot_lambda_to_nats`.

log_prob (seed 004, Eq. of "Density estimation with importance sampling"): with L draws
``z_l ~ q(z|s,a)`` and ``log w_l = log p(a|z_l,s) + log p(z_l) - log q(z_l|s,a)``,

* ``estimator="elbo"``: ``(1/L) sum_l log p(a|z_l,s) - KL(q(z|s,a) || p(z))``, the ELBO
  ``E_q[log p(a|z,s)] - KL`` of the slides with its KL in closed form, as in the training loss and in
  SPOT's released code (L = 1 is SPOT's training-time penalty). A lower bound on log p(a|s), with
  the same expectation as ``(1/L) sum_l log w_l``. The two differ in their noise only: on the
  biased mazes' fitted CVAEs (5,000 steps) the per-draw spread of the gradient in the action is
  about the same (0.56 closed form vs 0.45 sampled on the medium maze, 0.23 vs 0.22 on the U-maze,
  against mean gradients of 1.9 and 1.6; ``benchmarks/cvae_elbo_gradient_noise.py``); under a
  wide q, such as an untrained encoder's, the sampled KL's is far larger;
* ``estimator="iw"`` (default): ``log (1/L) sum_l w_l``, the importance-weighted estimate.
  It is at least the ELBO computed from the same draws (Jensen), its expectation increases
  with L and converges to log p(a|s) (Burda et al. 2016), so it is a stochastic lower bound
  that tightens with L. Default L = ``eval_samples`` (100).

Hence ``log_prob_kind = "estimate"``. Both are differentiable in the action (z is drawn by
reparameterisation), so grad_log_prob works by autograd; it is stochastic like the estimate
itself (seed the generator for reproducible values).

Sampling (BCQ): ``z ~ N(0, I)`` clipped to ``[-latent_clip, latent_clip]`` = [-0.5, 0.5], and
the action is the decoder mean tanh(dec(s,z)). Samples are therefore *not* draws from the
density above (no decoder noise, truncated prior): they concentrate on its modes, which is
what BCQ/BEAR want from behaviour samples.

Boundary mass: the fit sees actions clipped to [-1+delta, 1-delta] (``boundary_delta``). The
decoder mean is a tanh, so it never reaches +-1, but the Gaussian decoder gives every action
in R^A, including exactly +-1, a finite density; no clipping is needed in log_prob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.errors import ConfigError, require_at_least, require_ordered
from behavior_models.nets import adam, mlp

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class CVAEConfig(BehaviorModelConfig):
    """BCQ/BEAR/SPOT's CVAE. The fit keeps the zoo's shared schedule (20,000 steps, the learning rate
    decayed by a cosine to a tenth); the sources train 1e5 steps at a constant 1e-3 (ALGORITHMS.md,
    "CVAE"): ``bm fit --model cvae --steps 100000 --config cvae.json`` with ``{"lr_final_fraction": 1.0}``."""

    hidden: tuple[int, ...] = (750, 750)  # encoder and decoder widths (BCQ/BEAR/SPOT)
    latent_factor: int = 2  # latent dim Z = latent_factor * A (SPOT: 2A)
    kl_weight: float = 0.5  # beta of the loss; also sets decoder_std = sqrt(beta / (2 latent_factor))
    log_std_min: float = -4.0  # clamp of the encoder's log-std (BCQ)
    log_std_max: float = 15.0
    latent_clip: float = 0.5  # |z| <= latent_clip when sampling (BCQ)
    estimator: str = "iw"  # default log_prob estimator: "iw" or "elbo"
    eval_samples: int = 100  # default L of log_prob (evaluation; SPOT uses up to 500)
    max_decoder_rows: int = 65_536  # log_prob decodes B*L latents in chunks of at most this many rows

    def __post_init__(self) -> None:
        super().__post_init__()
        # Refused here, not after the fit: the fit calibrates with log_prob(num_samples=eval_samples),
        # and latent_factor=0 divides by zero in decoder_std.
        require_at_least(self, {"latent_factor": 1, "eval_samples": 1, "max_decoder_rows": 1})
        require_ordered(self, "log_std_min", "log_std_max")  # swapped, the encoder's std would be a constant
        # A negative clip is a swapped clamp(-clip, clip): every sampling latent at -|latent_clip|.
        if not self.latent_clip >= 0:
            raise ConfigError(f"CVAEConfig.latent_clip must be >= 0, got {self.latent_clip}")


def gaussian_kl_from_standard(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, exp(log_std)^2) || N(0, 1)) per dimension, in closed form."""
    return 0.5 * (mean.pow(2) + (2.0 * log_std).exp() - 1.0 - 2.0 * log_std)


def spot_lambda_to_nats(lam: float, kl_weight: float, latent_dim: int) -> float:
    """SPOT's lambda (on the MSE + beta*KL loss of a CVAE with ``latent_dim`` latents) as a
    weight on a log-density in nats: lambda * beta / Z (the module docstring)."""
    return lam * kl_weight / latent_dim


class CVAEBehaviorModel(BehaviorModel):
    name = "cvae"
    config_class = CVAEConfig
    log_prob_kind = "estimate"
    differentiable_log_prob = True
    reparameterized_sample = True
    # What `bm eval` reports, default first: log_prob options by label.
    evaluation_variants = {"iw": {"estimator": "iw"}, "elbo": {"estimator": "elbo"}}

    def __init__(self, obs_dim: int, act_dim: int, config: CVAEConfig) -> None:
        super().__init__(obs_dim, act_dim, config)
        if config.estimator not in ("iw", "elbo"):
            raise ConfigError(f"estimator must be 'iw' or 'elbo', got {config.estimator!r}")
        if config.kl_weight <= 0:
            raise ConfigError(f"kl_weight must be > 0 (it sets decoder_std), got {config.kl_weight}")
        self.latent_dim = config.latent_factor * act_dim
        self.encoder = mlp(obs_dim + act_dim, config.hidden, 2 * self.latent_dim)
        self.decoder = mlp(obs_dim + self.latent_dim, config.hidden, act_dim)

    @property
    def decoder_std(self) -> float:
        """sqrt(beta A / 2Z): the Gaussian decoder under which the training loss is a scaled -ELBO."""
        return math.sqrt(self.config.kl_weight / (2.0 * self.config.latent_factor))

    # ------------------------------------------------------------------ networks
    def encode(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of q(z|s,a)."""
        mean, log_std = self.encoder(torch.cat([obs, act], dim=-1)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.config.log_std_min, self.config.log_std_max)

    def decode(self, obs: Tensor, z: Tensor) -> Tensor:
        """Decoder mean tanh(dec(s, z)) in (-1, 1)."""
        return torch.tanh(self.decoder(torch.cat([obs, z], dim=-1)))

    # ------------------------------------------------------------------ density
    def posterior_draws(self, obs: Tensor, act: Tensor, num_samples: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q's mean and log-std [B, Z], the standard normal draws eps [B, L, Z] and z = mean + std * eps."""
        mean, log_std = self.encode(obs, act)
        eps = torch.randn(obs.shape[0], num_samples, self.latent_dim, device=obs.device, dtype=obs.dtype)
        return mean, log_std, eps, mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps

    def log_weights(self, obs: Tensor, act: Tensor, num_samples: int) -> Tensor:
        """[B, L] log importance weights log p(a|z,s) + log p(z) - log q(z|s,a), z ~ q."""
        _, log_std, eps, z = self.posterior_draws(obs, act, num_samples)
        log_q = (-0.5 * eps.pow(2) - log_std.unsqueeze(1) - 0.5 * _LOG_2PI).sum(-1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * _LOG_2PI).sum(-1)
        return self.log_decoder(obs, act, z) + log_prior - log_q

    def log_decoder(self, obs: Tensor, act: Tensor, z: Tensor) -> Tensor:
        """[B, L] log p(a|z_l,s) for latents z [B, L, Z], decoded in chunks of at most
        ``max_decoder_rows`` rows (B*L is large at L = 500); the result does not depend on the chunking."""
        batch, num_samples = z.shape[:2]
        chunk = max(1, self.config.max_decoder_rows // max(batch, 1))
        sigma = self.decoder_std
        log_decoder = []
        for start in range(0, num_samples, chunk):
            z_chunk = z[:, start:start + chunk]
            width = z_chunk.shape[1]
            recon = self.decode(obs.repeat_interleave(width, dim=0), z_chunk.reshape(batch * width, -1))
            residual = (act.unsqueeze(1) - recon.reshape(batch, width, -1)) / sigma
            log_decoder.append((-0.5 * residual.pow(2) - math.log(sigma) - 0.5 * _LOG_2PI).sum(-1))
        return torch.cat(log_decoder, dim=1)

    def _log_prob(self, obs: Tensor, act: Tensor, estimator: str | None = None,
                  num_samples: int | None = None) -> Tensor:
        estimator = estimator or self.config.estimator
        num_samples = int(self.config.eval_samples if num_samples is None else num_samples)  # 0 is refused, not the default
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if estimator == "iw":
            return torch.logsumexp(self.log_weights(obs, act, num_samples), dim=1) - math.log(num_samples)
        if estimator == "elbo":
            mean, log_std, _, z = self.posterior_draws(obs, act, num_samples)
            return self.log_decoder(obs, act, z).mean(dim=1) - gaussian_kl_from_standard(mean, log_std).sum(-1)
        raise ConfigError(f"estimator must be 'iw' or 'elbo', got {estimator!r}")

    def _sample(self, obs: Tensor, n: int) -> Tensor:
        clip = self.config.latent_clip
        z = torch.randn(obs.shape[0] * n, self.latent_dim, device=obs.device, dtype=obs.dtype).clamp(-clip, clip)
        return self.decode(obs.repeat_interleave(n, dim=0), z).reshape(obs.shape[0], n, self.act_dim)

    # ------------------------------------------------------------------ training
    def loss(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, reconstruction MSE, KL per latent dim): the BCQ/SPOT loss, dimension-averaged."""
        mean, log_std = self.encode(obs, act)
        z = mean + log_std.exp() * torch.randn_like(mean)
        recon = (self.decode(obs, z) - act).pow(2).mean()
        kl = gaussian_kl_from_standard(mean, log_std).mean()
        return recon + self.config.kl_weight * kl, recon, kl

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, obs: Tensor, act: Tensor, step: int, optimizers) -> dict[str, Tensor]:
        loss, recon, kl = self.loss(obs, act)
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["model"].step()
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}
