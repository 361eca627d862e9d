"""Critics and actors shared by every algorithm.

* :class:`EnsembleLinear` / :class:`QEnsemble`: E critics evaluated as one batched matmul
  (``torch.baddbmm`` over weights ``[E, in, out]``), not a Python loop over critics.
* :class:`DeterministicActor`: a = tanh(MLP(s)), optionally with dropout on its hidden units.
* :class:`TanhGaussianActor`: a = tanh(u), u ~ N(mu(s), sigma(s)^2), with the tanh log-det term.
* :class:`GaussianActor`: N(tanh(mu(s)), diag(sigma^2)) with a learned, state-independent
  sigma (the explicit AWR policy of seed 002, App. A.2, after Kostrikov et al. 2021).
* :func:`init_head_uniform`: the small U(-w, w) output-layer initialisation of SPOT's AntMaze
  networks (its released code's ``actor_init_w`` / ``critic_init_w``).
* :func:`evaluation_mode`: a module in evaluation mode for a block (acting without dropout).
* :func:`soft_update`: polyak averaging of target networks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from behavior_models.nets import mlp


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: [E, B, in] -> [E, B, out]."""

    def __init__(self, in_features: int, out_features: int, ensemble_size: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The initialisation of nn.Linear, member by member: U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, ensemble={self.ensemble_size}"


class QEnsemble(nn.Module):
    """E critics Q_e(s, a), each an MLP of widths ``hidden`` with ReLU, as one vectorised module.

    ``forward(obs [..., S], act [..., A]) -> [E, ...]``: every member sees the same inputs.
    On a CPU, inputs of more than ``chunk_rows`` rows (ARQ's B x N candidates) are evaluated in
    chunks of that many rows, so the [E, rows, width] activations stay cache-sized: about twice
    as fast here as one huge batched matmul, whose elementwise passes are bound by memory. On a
    GPU the whole input goes through at once (one launch per layer instead of one per chunk).
    """

    chunk_rows: int = 1024

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), ensemble_size: int = 2,
                 head_init: float = 0.0) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.obs_dim, self.act_dim = obs_dim, act_dim
        widths = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [EnsembleLinear(width_in, width_out, ensemble_size), nn.ReLU(inplace=True)]
        layers.append(EnsembleLinear(widths[-1], 1, ensemble_size))
        self.net = nn.Sequential(*layers)
        init_head_uniform(self.net[-1], head_init)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        if x.device.type == "cpu" and x.shape[0] > self.chunk_rows:
            chunks = [x[i:i + self.chunk_rows] for i in range(0, x.shape[0], self.chunk_rows)]
        else:
            chunks = [x]
        out = [self.net(chunk.expand(self.ensemble_size, -1, -1)) for chunk in chunks]
        return torch.cat(out, dim=1).reshape(self.ensemble_size, *lead)

    def forward_members(self, obs: Tensor, act: Tensor) -> Tensor:
        """Member e on its own inputs ``obs[e]``, ``act[e]`` ([E, N, S], [E, N, A]) -> [E, N].

        For per-critic gradients with respect to the action (seed 001's gradient penalty):
        with shared inputs, autograd would return the sum of the members' gradients.
        """
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)): actions in [-1, 1]^A, the box every dataset's actions are checked to lie in.

    ``dropout`` > 0 drops hidden units while the module is in training mode (SPOT's released
    locomotion actor); act in evaluation mode (:func:`evaluation_mode`) for the deterministic policy.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), head_init: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.net = mlp(obs_dim, hidden, act_dim, dropout=dropout)
        init_head_uniform(self.net[-1], head_init)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs))


class TanhGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)^2); log-probs include the tanh change of variables."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 log_std_min: float = -5.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def base_distribution(self, obs: Tensor) -> Independent:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return Independent(Normal(mean, log_std.clamp(self.log_std_min, self.log_std_max).exp(), validate_args=False),
                           1, validate_args=False)

    def forward(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist = self.base_distribution(obs)
        return torch.tanh(dist.base_dist.loc if deterministic else dist.rsample())

    def sample(self, obs: Tensor, n: int) -> Tensor:
        """n reparameterised actions [B, n, A] (their density: :meth:`log_prob`; BEAR needs none)."""
        return torch.tanh(self.base_distribution(obs).rsample((n,)).transpose(0, 1))

    def log_prob(self, obs: Tensor, act: Tensor, eps: float = 1e-6) -> Tensor:
        """log pi(a|s) of actions in (-1, 1); clipped by ``eps`` so a = +-1 stays finite."""
        u = torch.atanh(act.clamp(-1.0 + eps, 1.0 - eps))
        return self.base_distribution(obs).log_prob(u) - _tanh_log_det(u)


def _tanh_log_det(u: Tensor) -> Tensor:
    # log |d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), numerically stable.
    return (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)


class GaussianActor(nn.Module):
    """N(tanh(mu(s)), diag(sigma^2)) with a state-independent, learned log-sigma."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 log_std_min: float = -5.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: Tensor) -> Independent:
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return Independent(Normal(torch.tanh(self.net(obs)), std, validate_args=False), 1, validate_args=False)

    def forward(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist = self.distribution(obs)
        return (dist.mean if deterministic else dist.sample()).clamp(-1.0, 1.0)

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.distribution(obs).log_prob(act)


@torch.no_grad()
def init_head_uniform(layer: nn.Linear | EnsembleLinear, bound: float) -> None:
    """Redraw an output layer's weights and biases from U(-bound, bound); ``bound = 0`` keeps
    nn.Linear's default. A small bound starts an actor near a = 0 and a critic near Q = 0."""
    if bound < 0:
        raise ValueError(f"a head initialisation bound must be >= 0 (0 keeps the default), got {bound}")
    if bound > 0:
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block ``module`` is in evaluation mode (no dropout); its mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Inside the block, the parameters of ``modules`` take no gradient (they are still
    differentiated through): for a loss that trains one network through another, e.g. an actor
    through its critic, without computing the critic's weight gradients. Restores the flags."""
    saved = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak update: target <- (1 - tau) * target + tau * source (tau = 1 - polyak coefficient)."""
    for target_param, source_param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(source_param, tau)
