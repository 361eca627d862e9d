"""The variance-preserving SDE of Song et al. (2021), as the ARQ paper uses it (seed 002, App. A.2).

Only the SDE's math lives here: no networks, no solvers. With the linear schedule
beta(t) = beta_min + t (beta_max - beta_min) on t in [0, 1]:

* forward SDE:            dx = f dt + g dW with f = -1/2 beta(t) x and g = sqrt(beta(t))
* reverse SDE:            dx = [f - g^2 score] dt + g dW-bar (:meth:`VPSDE.reverse_drift`)
* probability-flow ODE:   dx/dt = f - 1/2 g^2 score (:meth:`VPSDE.probability_flow_drift`)
* marginal p_t(x | x_0):  N(alpha(t) x_0, sigma(t)^2 I), with
  log alpha(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min and sigma(t)^2 = 1 - alpha(t)^2
* prior:                  N(0, I) (the marginal at t = 1 is N(alpha(1) x_0, sigma(1)^2 I), close to it)
* half log-SNR:           lambda(t) = log alpha(t) - log sigma(t), the variable of the DPM-Solver
  exponential integrator (Lu et al. 2022); :meth:`VPSDE.t_of_lambda` inverts it in closed form.

Functions take ``t`` as a tensor (0-d or broadcastable) and keep its device and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class VPSDE:
    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        """log of the marginal mean coefficient alpha(t)."""
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: Tensor) -> Tensor:
        """Marginal std sqrt(1 - alpha^2), accurate at small t (expm1 avoids the cancellation)."""
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def marginal_lambda(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha / sigma): decreasing in t."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        """The inverse of :meth:`marginal_lambda`: solve 1/4 d t^2 + 1/2 beta_min t = -log alpha."""
        minus_log_alpha = 0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        d = self.beta_max - self.beta_min
        # t = (-b + sqrt(b^2 + 4 a c)) / (2 a) with a = d/4, b = beta_min/2, c = -log alpha, rationalised.
        return 2.0 * minus_log_alpha / (0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min**2 + d * minus_log_alpha))

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """f - g^2 score = -1/2 beta(t) x - beta(t) score: the drift of the reverse-time SDE
        (Song et al. 2021, Eq. 6), whose diffusion is the forward one, g(t) = sqrt(beta(t))."""
        beta = self.beta(t)
        return -0.5 * beta * x - beta * score

    def probability_flow_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """f - 1/2 g^2 score = -1/2 beta(t) (x + score): the probability-flow ODE (Song et al.
        2021, Eq. 13), which shares the SDE's marginals p_t."""
        return -0.5 * self.beta(t) * (x + score)

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """A draw of x_t given x_0: alpha(t) x_0 + sigma(t) z."""
        return self.alpha(t) * x0 + self.sigma(t) * noise

    def prior_sample(self, shape: tuple[int, ...], *, device=None, dtype=None, generator=None) -> Tensor:
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)

    @staticmethod
    def prior_log_prob(z: Tensor) -> Tensor:
        """log N(z; 0, I) summed over the last dimension."""
        return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)

    def discrete_betas(self, n: int, *, device=None, dtype=torch.float32) -> Tensor:
        """The DDPM discretisation beta_i = linspace(beta_min/N, beta_max/N, N), for the corrector's alpha_i."""
        return torch.linspace(self.beta_min / n, self.beta_max / n, n, device=device, dtype=dtype)
