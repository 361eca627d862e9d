"""A conditional normalising flow beta(a|s), assembled from nflows transforms.

Structure: ``num_transforms`` masked autoregressive transforms (MADE networks that also take
the normalised state as context), each followed by a reverse permutation of the action
dimensions, on a standard-normal base. ``transform`` chooses the element-wise map:

* ``"affine"``: masked affine autoregressive (MAF, Papamakarios et al. 2017);
* ``"spline"``: masked piecewise rational-quadratic autoregressive (neural spline flow,
  Durkan et al. 2019) with ``num_bins`` bins on [-tail_bound, tail_bound] and linear tails.

(``nflows.flows.MaskedAutoregressiveFlow`` takes no context, hence the assembly here.)
log_prob is exact: one pass of the transform, change of variables. On a GPU, mind that
nflows' spline checks its inputs on the host (whether any lies inside the tail bound, and
an assertion in the inverse): a few device synchronisations per transform and call, A times
more when sampling (the inverse is sequential over dimensions). The affine transform has none.

Boundary handling (``box_bijection``):

* ``"tanh"`` (default): the flow models u = atanh(a) in R^A, so the density is over the
  open box (-1, 1)^A and every sample lies inside it:
  ``log beta(a|s) = log p_U(atanh a | s) - sum_i log(1 - a_i^2)``.
  Actions are clipped to [-1+delta, 1-delta] (``boundary_delta``) before the atanh, both
  in the fit and in log_prob, so an action exactly at +-1 gets the (finite) log-density
  of its clipped neighbour. Mass that a dataset puts exactly on +-1 is learned as a sharp
  peak at the clipped point.
* ``"none"``: the flow models a directly; the density is over R^A (mass may leak outside
  the box; samples are clipped to it by the contract), fitted on actions clipped to
  [-1+delta, 1-delta]; actions at +-1 are scored as they are (finite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from nflows.transforms.autoregressive import (
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
)
from nflows.transforms.base import CompositeTransform
from nflows.transforms.permutations import ReversePermutation
from torch import Tensor

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.errors import ConfigError, require_at_least
from behavior_models.nets import adam


@dataclass(frozen=True)
class FlowConfig(BehaviorModelConfig):
    transform: str = "spline"  # "affine" (MAF) or "spline" (rational-quadratic autoregressive)
    num_transforms: int = 4
    hidden: int = 128  # MADE hidden width
    num_blocks: int = 2  # residual MADE blocks per transform
    num_bins: int = 8  # spline bins
    tail_bound: float = 4.0  # spline interval [-B, B] (atanh(1 - 1e-3) = 3.8); linear tails outside
    box_bijection: str = "tanh"  # "tanh": density over the box (model atanh(a)); "none": over R^A
    lr: float = 5e-4
    grad_clip: float = 5.0  # max gradient norm per step (spline flows occasionally spike)

    def __post_init__(self) -> None:
        super().__post_init__()
        # 0 transforms, or a spline of tail bound 0 (all of R in its identity tails), is N(0, I) in
        # atanh space whatever the state; a MADE of width 0 ignores the state too; 0 bins fails in nflows.
        require_at_least(self, {"num_transforms": 1, "hidden": 1, "num_bins": 1})
        if not self.tail_bound > 0:
            raise ConfigError(f"FlowConfig.tail_bound must be > 0, got {self.tail_bound}")
        # clip_grad_norm_ with max_norm 0 zeroes every gradient: the fit would run and learn nothing.
        if not self.grad_clip > 0:
            raise ConfigError(f"FlowConfig.grad_clip must be > 0 (it is the max gradient norm; 0 would zero every "
                              f"gradient), got {self.grad_clip}; a large value such as 1e9 turns clipping off")


class FlowBehaviorModel(BehaviorModel):
    name = "flow"
    config_class = FlowConfig
    log_prob_kind = "exact"
    differentiable_log_prob = True
    reparameterized_sample = True

    def __init__(self, obs_dim: int, act_dim: int, config: FlowConfig) -> None:
        super().__init__(obs_dim, act_dim, config)
        if config.transform not in ("affine", "spline"):
            raise ConfigError(f"transform must be 'affine' or 'spline', got {config.transform!r}")
        if config.box_bijection not in ("tanh", "none"):
            raise ConfigError(f"box_bijection must be 'tanh' or 'none', got {config.box_bijection!r}")
        layers = []
        for _ in range(config.num_transforms):
            if config.transform == "affine":
                layers.append(MaskedAffineAutoregressiveTransform(
                    features=act_dim, hidden_features=config.hidden, context_features=obs_dim,
                    num_blocks=config.num_blocks))
            else:
                layers.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=act_dim, hidden_features=config.hidden, context_features=obs_dim,
                    num_bins=config.num_bins, num_blocks=config.num_blocks, tails="linear",
                    tail_bound=config.tail_bound))
            layers.append(ReversePermutation(features=act_dim))
        # data -> noise; the base is N(0, I) (written out below rather than nflows' StandardNormal,
        # which always samples float32).
        self.transform = CompositeTransform(layers)

    def _to_flow_space(self, act: Tensor) -> tuple[Tensor, Tensor]:
        """(u, log|du/da| summed over dims) for the chosen box bijection."""
        if self.config.box_bijection == "none":
            return act, act.new_zeros(act.shape[0])
        bound = 1.0 - self.config.boundary_delta
        act = act.clamp(-bound, bound)
        return torch.atanh(act), -torch.log1p(-act.pow(2)).sum(-1)

    def _log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """Change of variables: log N(z; 0, I) + log|dz/du| + log|du/da|."""
        u, log_det_box = self._to_flow_space(act)
        z, log_det_flow = self.transform(u, context=obs)
        log_base = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_base + log_det_flow + log_det_box

    def _sample(self, obs: Tensor, n: int) -> Tensor:
        z = torch.randn(obs.shape[0] * n, self.act_dim, device=obs.device, dtype=obs.dtype)
        u, _ = self.transform.inverse(z, context=obs.repeat_interleave(n, dim=0))
        u = u.reshape(obs.shape[0], n, self.act_dim)
        return torch.tanh(u) if self.config.box_bijection == "tanh" else u

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, obs: Tensor, act: Tensor, step: int, optimizers) -> dict[str, Tensor]:
        loss = -self._log_prob(obs, act).mean()  # maximum likelihood
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        optimizers["model"].step()
        return {"nll": loss.detach(), "grad_norm": grad_norm.detach()}
