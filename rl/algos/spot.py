"""SPOT: Supported Policy Optimization (seed 004, Algorithm 1; ALGORITHMS.md "SPOT").

TD3 (:mod:`rl.algos.td3`: twin critics, target policy smoothing, delayed actor and target
updates) whose actor minimises the density-regularised objective of seed 004, Eq. 9, with the TD3+BC Q scaling:

    J_pi(phi) = E_{s~D}[ -Q_1(s, pi(s)) / mean|Q_1(s, pi(s))|  +  lambda_nats * (-log beta_hat(pi(s)|s)) ]

(mean|Q_1| over the batch, detached). Critic: J_Q(theta) = sum_j E_D[(Q_j(s,a) - y)^2],
y = r + gamma (1 - done) min_j Q_target_j(s', clip(pi_target(s') + clip(sigma * eps, -c, c), -1, 1)).

**The density.** beta_hat is a fitted behavior model (``--behavior DIR``), any backend whose
density is differentiable in the action:

* ``density="log_prob"``: autograd through ``model.log_prob`` (CVAE ELBO, the SPOT default;
  IW-CVAE; flow; Gaussian);
* ``density="grad_log_prob"``: the score model's native score. d(-log beta)/da = -score, so the
  penalty is the surrogate ``-(stop_grad(score(pi(s)|s)) . pi(s))``, whose gradient in the
  action is exactly minus the score (no ODE solve). Its value is not -log beta; the log
  reports the score's norm instead.
* ``density="auto"`` picks ``grad_log_prob`` for backends with a native score, else
  ``log_prob``; unnormalised densities (the GAN's discriminator) are refused.

**Units of lambda** (ALGORITHMS.md, CVAE "Units"). SPOT's published lambda multiplies its CVAE
loss (MSE + beta_KL * KL, both averaged over dimensions) = (beta_KL / Z) * (-ELBO in nats)
+ const, with Z = 2A latents in SPOT's CVAE. With ``lambda_units="spot_cvae"`` (default) the
penalty on a log-density in nats uses lambda_nats = lambda * beta_KL / Z (the behaviour CVAE's
own beta_KL and Z; SPOT's 0.5 and 2A for other backends); with ``"nats"`` lambda is used as given.

**Per-domain settings** (ALGORITHMS.md "SPOT"): on maze navigation ids (``task_family``, the
rule ARQ's AntMaze column and the r - 1 reward use too) the actor's lr is 1e-4, states are not
normalised, the output layers start small (actor U(+-1e-3), critics U(+-3e-3)) and the actor
has no dropout, as SPOT's released AntMaze configurations run (thuml/SPOT,
configs/offline/antmaze-*.yml: actor_lr, antmaze_no_normalize, actor_init_w, critic_init_w,
actor_dropout 0); elsewhere TD3's 3e-4, z-scored states, nn.Linear's initialisation and that
code's default dropout of 0.1 on the actor's hidden units while it trains (its locomotion
configurations keep it; the actor acts without). Fields set by the user are kept; config.json
records the resolved values. Those settings are for SPOT's 1M steps: at 20,000 the maze actor
(1e-4, every ``policy_freq``-th update) has not reached its density's peak
(docs/offline_rl_diagnostics.md, "What bounds SPOT at 20,000 steps").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from behavior_models.cvae import spot_lambda_to_nats
from behavior_models.errors import ConfigError, require_at_least
from rl.algos.base import BehaviorInputs
from rl.algos.td3 import TD3Config, TD3Family
from rl.core.buffer import Batch
from rl.core.tasks import fill_unset_fields, task_family

DENSITIES = ("auto", "log_prob", "grad_log_prob")
CVAE_ESTIMATORS = ("elbo", "iw")  # behavior_models.cvae's log_prob estimators
# SPOT on AntMaze (ALGORITHMS.md "SPOT"): actor lr 1e-4 and raw states, with r - 1 rewards (the
# reward convention resolves the same way); its released AntMaze configurations also start the
# actor's and critics' output layers at U(-1e-3, 1e-3) and U(-3e-3, 3e-3) (actor_init_w,
# critic_init_w) and turn off the actor dropout its code otherwise applies (0.1). Other families
# keep TD3's settings, with that dropout.
SPOT_MAZE_DEFAULTS = {"actor_lr": 1e-4, "normalize_states": False, "actor_head_init": 1e-3, "critic_head_init": 3e-3,
                      "actor_dropout": 0.0}
SPOT_OTHER_DEFAULTS = {"actor_lr": 3e-4, "normalize_states": True, "actor_head_init": 0.0, "critic_head_init": 0.0,
                       "actor_dropout": 0.1}


@dataclass(frozen=True)
class SPOTConfig(TD3Config):
    # TD3's fields and defaults (rl.algos.td3), except five that SPOT sets per domain
    # (ALGORITHMS.md "SPOT", AntMaze): None resolves from the dataset id through SPOT_MAZE_DEFAULTS
    # or SPOT_OTHER_DEFAULTS.
    actor_lr: float | None = None  # 1e-4 on maze navigation, else TD3's 3e-4
    normalize_states: bool | None = None  # off on maze navigation, else on (TD3+BC)
    actor_head_init: float | None = None  # 1e-3 on maze navigation (SPOT's AntMaze code), else 0: nn.Linear's
    critic_head_init: float | None = None  # 3e-3 on maze navigation, else 0
    actor_dropout: float | None = None  # 0 on maze navigation, else 0.1 (SPOT's code)
    lambda_: float = 0.1  # penalty weight, in `lambda_units` (SPOT: 0.05-1.0 locomotion, 0.025-0.25 AntMaze)
    lambda_units: str = "spot_cvae"  # spot_cvae: lambda_nats = lambda * beta / Z (Z = 2A latents in SPOT) | nats
    # beta of SPOT's CVAE loss, for the units conversion when beta_hat is not a CVAE (a CVAE's own
    # kl_weight is used when it is one).
    cvae_kl_weight: float = 0.5
    # A CVAE's density: elbo (SPOT's default, L = 1, its KL in closed form as in SPOT's code) | iw
    # (IW-CVAE, L > 1; at L = 1 the one-draw log weight: the ELBO with its KL sampled, the default before 4a2781d).
    cvae_estimator: str = "elbo"
    cvae_samples: int = 1  # L of the CVAE estimator (SPOT: 1 for the ELBO; IW-CVAE: L > 1)
    density: str = "auto"  # auto | log_prob | grad_log_prob (see the module docstring)
    q_normalization: bool = True  # divide Q by mean|Q| (detached) in the actor loss (TD3+BC)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, {"cvae_samples": 1})  # else the CVAE refuses it at the first actor step
        if self.cvae_estimator not in CVAE_ESTIMATORS:  # likewise
            raise ConfigError(f"SPOTConfig.cvae_estimator must be one of {CVAE_ESTIMATORS}, got {self.cvae_estimator!r}")


def density_options(model, estimator: str, samples: int) -> dict[str, object]:
    """Options SPOT passes to the model's ``log_prob``: a CVAE's estimator and its sample count
    (the CVAE's own default is the evaluation-grade IW estimate, not SPOT's ELBO); none otherwise."""
    return {"estimator": estimator, "num_samples": samples} if model.name == "cvae" else {}


def density_penalty(model, density: str, raw_obs: Tensor, actions: Tensor,
                    options: dict[str, object]) -> tuple[Tensor, dict[str, Tensor]]:
    """SPOT's penalty per sample [B] and what to log. ``density="log_prob"``: -log beta_hat(a|s),
    differentiated through the model; ``"grad_log_prob"``: the surrogate -(stop_grad(score) . a),
    whose gradient in ``a`` is minus the score (its value is not -log beta, so the score's norm is
    logged instead)."""
    if density == "log_prob":
        neg_log_beta = -model.log_prob(raw_obs, actions, **options)
        return neg_log_beta, {"neg_log_beta": neg_log_beta.detach().mean()}
    score = model.grad_log_prob(raw_obs, actions.detach(), **options).detach()
    return -(score * actions).sum(-1), {"score_norm": score.norm(dim=-1).mean()}


class SPOT(TD3Family):
    name = "spot"
    config_class = SPOTConfig
    behavior_kind = "model"

    @classmethod
    def resolve_config(cls, config: SPOTConfig, dataset_id: str, steps: int) -> SPOTConfig:
        return fill_unset_fields(config, SPOT_MAZE_DEFAULTS if task_family(dataset_id) == "antmaze"
                                 else SPOT_OTHER_DEFAULTS)

    def __init__(self, config: SPOTConfig, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        config = self.resolve_config(config, "", 0)  # built without a dataset id: TD3's settings
        super().__init__(config, obs_dim, act_dim, device, behavior)
        model = self.behavior.model
        if model is None:
            raise ConfigError("SPOT needs a behavior model: --behavior DIR (from `bm fit`)")
        self.density = resolve_density(config.density, model.capabilities(), model.name)
        is_cvae = model.name == "cvae"
        self.density_options = density_options(model, config.cvae_estimator, config.cvae_samples)
        # SPOT's units are those of its CVAE's loss: this CVAE's, or else SPOT's own (2A latents).
        kl_weight = float(model.config.kl_weight) if is_cvae else config.cvae_kl_weight
        latent_dim = model.latent_dim if is_cvae else 2 * act_dim
        if config.lambda_units == "spot_cvae":
            self.lambda_nats = spot_lambda_to_nats(config.lambda_, kl_weight, latent_dim)
        elif config.lambda_units == "nats":
            self.lambda_nats = config.lambda_
        else:
            raise ConfigError(f"SPOT lambda_units={config.lambda_units!r}; choose spot_cvae or nats")

    def describe(self) -> dict[str, object]:
        return {"density": self.density, "lambda_nats": self.lambda_nats, "density_options": self.density_options,
                "behavior_backend": self.behavior.model.name}

    def penalty(self, raw_obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sample -log beta_hat(a|s) [B] (or its gradient surrogate) and what to log."""
        return density_penalty(self.behavior.model, self.density, raw_obs, actions, self.density_options)

    def actor_loss(self, batch: Batch, data_q: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """J_pi of Eq. 9 with TD3+BC scaling (see the module docstring); ``data_q`` is not used."""
        obs, raw_obs = batch.observations, batch.raw_observations
        actions = self.actor(obs)
        q = self.critic(obs, actions)[0]
        scale = 1.0 / q.abs().mean().detach() if self.config.q_normalization else 1.0
        penalty, logged = self.penalty(raw_obs, actions)
        loss = -scale * q.mean() + self.lambda_nats * penalty.mean()
        return loss, {"actor_loss": loss.detach(), "actor_q": q.detach().mean(), **logged}


def resolve_density(density: str, capabilities: dict[str, Any], backend: str) -> str:
    """Which way the penalty reaches the actor for a backend with ``capabilities``."""
    if density not in DENSITIES:
        raise ConfigError(f"SPOT density={density!r}; choose one of {DENSITIES}")
    if capabilities.get("log_prob_kind") == "unnormalized":
        raise ConfigError(f"SPOT needs a density, and the {backend} backend's log_prob is unnormalised; use a "
                          "cvae, flow, gaussian or score model")
    if density == "auto":
        density = "grad_log_prob" if capabilities.get("native_grad_log_prob") else "log_prob"
    if density == "log_prob" and not capabilities.get("differentiable_log_prob"):
        raise ConfigError(f"the {backend} backend's log_prob is not differentiable in the action; use "
                          "density=grad_log_prob" + (" (it has a native score)" if capabilities.get("native_grad_log_prob") else ""))
    if density == "grad_log_prob" and not capabilities.get("grad_log_prob"):
        raise ConfigError(f"the {backend} backend offers no grad_log_prob")
    return density
