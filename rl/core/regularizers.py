"""Constraints and critic regularisers shared by several algorithms, written once.

* :func:`mmd`: the maximum mean discrepancy of BEAR (seed 001, Eq. 5), between two sets of
  action samples per state, with a Laplacian or a Gaussian kernel;
* :func:`gradient_penalty`: the one-sided penalty on ||d Q / d a|| of seed 001, Eq. 8, for every
  member of a :class:`~rl.core.networks.QEnsemble` separately;
* :func:`minmax_weight`: the critic weight of seed 001, Eq. 10, min-max normalised over the batch;
* :func:`td3_target`: TD3's clipped double-Q target with target policy smoothing;
* :func:`critic_loss`: sum_j E[(Q_j(s, a) - y)^2], plus lambda_GP times Eq. 8 when it is due;
* :class:`PlusPlusOptions`: seed 001's two options as config fields, shared by BEAR's and TD3+BC's configs;
  :func:`table7_defaults`: their per-task values (Table 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from behavior_models.errors import ConfigError, require_at_least
from rl.core.tasks import adroit_task

MMD_KERNELS = ("laplacian", "gaussian")


def mmd(x: Tensor, y: Tensor, kernel: str = "laplacian", sigma: float = 20.0, eps: float = 1e-6) -> Tensor:
    """sqrt(MMD^2 + eps) per state between samples ``x`` [B, n, A] and ``y`` [B, m, A].

    MMD^2 is the biased estimator E k(x, x') + E k(y, y') - 2 E k(x, y) over all pairs (self
    pairs included), as in BEAR. The kernels divide by **2 sigma, not 2 sigma^2**
    (ALGORITHMS.md, "BEAR"): Laplacian k = exp(-||x - y||_1 / (2 sigma)), Gaussian
    k = exp(-||x - y||_2^2 / (2 sigma)). ``eps`` keeps the square root differentiable at 0, so
    identical sets give sqrt(eps) = 1e-3, not exactly 0.
    """
    if kernel not in MMD_KERNELS:
        raise ConfigError(f"unknown MMD kernel {kernel!r}; choose one of {MMD_KERNELS}")

    def mean_kernel(a: Tensor, b: Tensor) -> Tensor:  # [B, n, A], [B, m, A] -> [B]
        diff = a.unsqueeze(2) - b.unsqueeze(1)  # [B, n, m, A]
        distance = diff.abs().sum(-1) if kernel == "laplacian" else diff.pow(2).sum(-1)
        return torch.exp(-distance / (2.0 * sigma)).mean((1, 2))

    return (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y) + eps).sqrt()


def gradient_penalty(critic: nn.Module, obs: Tensor, n_actions: int = 16, k: float = 1.0) -> Tensor:
    """Seed 001, Eq. 8 without lambda: E_{s, a ~ U[-1,1]^A}[ReLU(||grad_a Q_e(s, a)||_2 - k)^2], one value per critic [E].

    ``n_actions`` uniform random actions per state (the Appendix C.2 listing: 16), drawn
    independently for each critic of the ensemble; each critic's gradient is taken at its own
    actions, so it is that critic's, not the ensemble's sum. (The listing draws one set for both
    critics: the same expectation, with a vectorised ensemble's one draw per member.)
    The graph is kept (``create_graph=True``): the penalty is differentiable in the critic's
    weights, which is what makes it a regulariser.
    """
    members = critic.ensemble_size
    states = obs.repeat(n_actions, 1)  # [n B, S]
    actions = torch.rand(members, states.shape[0], critic.act_dim, device=obs.device, dtype=obs.dtype) * 2.0 - 1.0
    actions.requires_grad_(True)
    q = critic.forward_members(states.expand(members, -1, -1), actions)  # [E, n B]
    (grad,) = torch.autograd.grad(q.sum(), actions, create_graph=True)  # [E, n B, A]
    return torch.relu(grad.norm(dim=-1) - k).pow(2).mean(1)


def minmax_weight(q: Tensor, eps: float = 1e-6) -> Tensor:
    """Seed 001, Eq. 10: W = (Q - Q_min) / (Q_max - Q_min) over the batch, in [0, 1], without gradient.

    Eq. 10 is used, not the appendix listing's raw Q: a raw Q weight flips the constraint's
    sign when rewards (hence Q) are negative. ``eps`` guards a batch of equal Q values.
    """
    q = q.detach()
    low, high = q.min(), q.max()
    return (q - low) / (high - low + eps)


def td3_target(actor_target: nn.Module, critic_target: nn.Module, rewards: Tensor, next_obs: Tensor, dones: Tensor,
               gamma: float, policy_noise: float, noise_clip: float) -> Tensor:
    """y = r + gamma (1 - done) min_j Q'_j(s', clip(pi'(s') + clip(N(0, noise^2), -c, c), -1, 1)), no gradient."""
    with torch.no_grad():
        next_actions = actor_target(next_obs)
        noise = (torch.randn_like(next_actions) * policy_noise).clamp(-noise_clip, noise_clip)
        q_next = critic_target(next_obs, (next_actions + noise).clamp(-1.0, 1.0)).min(0).values
        return rewards + gamma * (1.0 - dones) * q_next


def critic_loss(critic: nn.Module, obs: Tensor, actions: Tensor, target: Tensor, penalty_weight: float = 0.0,
                penalty_due: bool = False, penalty_actions: int = 16, penalty_k: float = 1.0
                ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """sum_j mean_B (Q_j(s, a) - y)^2 over the ensemble, plus ``penalty_weight`` * sum_j Eq. 8 when
    ``penalty_due`` (seed 001 applies it every N-th step); returns the loss, what to log, and the
    detached Q_j(s, a) [E, B] of this step (seed 001's listing reuses them for Eq. 10's weight)."""
    q = critic(obs, actions)
    loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
    metrics = {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}
    if penalty_weight > 0 and penalty_due:
        penalty = gradient_penalty(critic, obs, penalty_actions, penalty_k).sum()
        loss = loss + penalty_weight * penalty
        metrics["gradient_penalty"] = penalty.detach()
    return loss, metrics, q.detach()


# Seed 001, Table 7 (App. C.2): TD3+BC's and TD3BC++'s alpha, and lambda_GP of TD3BC++ and BEAR++, for
# the Adroit tasks it names; every other task takes the locomotion column (alpha 2.5, lambda_GP 1).
TABLE7_ALPHA = {"door": 0.5, "hammer": 0.2, "pen": 0.5, "relocate": 0.02}
TABLE7_GRADIENT_PENALTY = {"relocate": 0.1}


def table7_defaults(dataset_id: str) -> dict[str, float]:
    """``alpha`` and ``gradient_penalty`` (lambda_GP) of seed 001's Table 7 for ``dataset_id``."""
    task = adroit_task(dataset_id)
    return {"alpha": TABLE7_ALPHA.get(task, 2.5), "gradient_penalty": TABLE7_GRADIENT_PENALTY.get(task, 1.0)}


@dataclass(frozen=True)
class PlusPlusOptions:
    """Seed 001's two options, as fields of the configs of the algorithms it extends (BEAR and
    TD3+BC; the ``++`` presets turn both on)."""

    # lambda_GP of Eq. 8; 0 = off. None (the ++ presets) resolves from the dataset id: Table 7.
    gradient_penalty: float | None = 0.0
    gp_k: float = 1.0  # the one-sided threshold k of Eq. 8
    gp_actions: int = 16  # uniform random actions per state (App. C.2 listing)
    gp_every: int = 5  # the penalty applies every N-th update (Sec. 4.1: N = 5)
    constraint_relaxation: bool = False  # weight the constraint by Eq. 10's W (Eq. 11 BEAR, Eq. 12 TD3+BC)

    def __post_init__(self) -> None:
        super().__post_init__()  # the algorithm config's own checks (AlgoConfig), next in the MRO
        # gp_every=0 divides by zero at the first update (penalty or not); gp_actions=0 makes Eq. 8 a nan mean.
        require_at_least(self, {"gp_every": 1, "gp_actions": 1})
        if self.gradient_penalty is not None and self.gradient_penalty < 0:
            raise ConfigError(f"{type(self).__name__}.gradient_penalty (lambda_GP) must be >= 0, got {self.gradient_penalty}")

    def penalty_args(self, updates: int) -> dict[str, Any]:
        """The gradient-penalty arguments of :func:`critic_loss` for the update after ``updates``
        (1-based: due on updates 5, 10, ...)."""
        return {"penalty_weight": self.gradient_penalty, "penalty_due": (updates + 1) % self.gp_every == 0,
                "penalty_actions": self.gp_actions, "penalty_k": self.gp_k}
