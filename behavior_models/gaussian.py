"""A state-conditioned diagonal Gaussian: beta(a|s) = N(a; mu(s), diag(sigma(s)^2)).

The simplest backend and the baseline of the zoo. Its log-density is exact over R^A (mass
outside the action box is not renormalised), differentiable in the action, and its samples
are reparameterised. Boundary mass: the fit sees actions clipped to [-1+delta, 1-delta]
(``boundary_delta``), so the fitted density has no spike at the box edges; ``log_prob``
scores an action exactly as given (a Gaussian over R^A is finite at +-1, no clipping needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.errors import require_ordered
from behavior_models.nets import adam, mlp


@dataclass(frozen=True)
class GaussianConfig(BehaviorModelConfig):
    hidden: tuple[int, ...] = (256, 256)
    log_std_min: float = -5.0  # clamp of the predicted log-std, for a finite density
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ordered(self, "log_std_min", "log_std_max")  # swapped, the std would be a constant


class GaussianBehaviorModel(BehaviorModel):
    name = "gaussian"
    config_class = GaussianConfig
    log_prob_kind = "exact"
    differentiable_log_prob = True
    reparameterized_sample = True

    def __init__(self, obs_dim: int, act_dim: int, config: GaussianConfig) -> None:
        super().__init__(obs_dim, act_dim, config)
        self.net = mlp(obs_dim, config.hidden, 2 * act_dim)

    def distribution(self, obs: Tensor) -> Independent:
        """The Gaussian beta(.|s) for normalised observations, as a torch Distribution."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.config.log_std_min, self.config.log_std_max)
        return Independent(Normal(mean, log_std.exp(), validate_args=False), 1, validate_args=False)

    def _log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.distribution(obs).log_prob(act)

    def _sample(self, obs: Tensor, n: int) -> Tensor:
        return self.distribution(obs).rsample((n,)).transpose(0, 1)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, obs: Tensor, act: Tensor, step: int, optimizers) -> dict[str, Tensor]:
        loss = -self._log_prob(obs, act).mean()  # maximum likelihood
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["model"].step()
        return {"nll": loss.detach()}

