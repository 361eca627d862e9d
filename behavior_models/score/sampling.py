"""Samplers of the reverse VP-SDE / probability-flow ODE (Song et al. 2021; Lu et al. 2022).

All take a row-wise ``score_fn(x [N, A], t 0-d) -> [N, A]`` (the condition is bound inside it)
and a starting draw from the prior, and run the whole batch (states x samples) at once. The
time grid lives on the device: no host<->device copies inside the loops of :func:`pc_sample`
and :func:`dpm_solve`.

* :func:`pc_sample`: predictor-corrector sampling (Song et al. 2021, Alg. 2 for the VP-SDE), as
  the ARQ paper runs it (seed 002, App. A.2): N = 500 steps on t from 1 to 1e-3; at each step one
  Langevin corrector step, then one Euler-Maruyama step of the reverse SDE; the last step
  returns the predictor's mean, without noise.
  **Langevin step size (deviation from the reference).** score_sde uses
  2 alpha_i (snr ||z|| / ||score||)^2 with both norms *averaged over the batch*, which makes a
  sample depend on which other samples share its batch (and so on the chunking). Three choices
  (``langevin_step``):

  - ``"per-sample"``: each sample's own norms. Batch-independent, but *biased*: a step size
    that depends on the position x through ||score(x)|| changes the chain's stationary law
    (continuous-time Langevin with step e(x) leaves p(x)/e(x), here ~ p(x) ||score(x)||^2,
    invariant, which pushes mass away from the modes), and in A <= 2 dimensions
    E[1/||score||^2] is infinite. Measured on a Gaussian with std 0.1 (PC-500, 20K samples):
    variance 0.086 instead of 0.0098 in 2-D (outliers at norm 27) and 0.0147 in 6-D. It only
    behaves in high dimension (images), where the norms concentrate.
  - ``"batch"``: score_sde's batch-averaged norms (variance 0.0098 in both tests).
  - ``"annealed"`` (default): 2 alpha_i snr^2 sigma(t)^2, the value the reference's formula
    takes when ||score|| ~ ||z|| / sigma(t) (noise-dominated x_t, i.e. early in the chain),
    and the annealed-Langevin schedule eps ~ sigma^2 of Song & Ermon (2019). It depends on
    neither the sample nor the batch, so chunking never changes a sample; late in the chain
    it is smaller than the reference's step (less correction; being independent of x, it
    keeps p_t as the corrector's target).
    Variance 0.0099 (2-D) and 0.0097 (6-D) in the same tests.

  **Resolution.** PC-500 cannot resolve a conditional narrower than about 0.02 (std). Near
  t = 1e-3 the Euler-Maruyama step multiplies x's deviation from the mode by about
  1 - beta(t) |dt| / var_t, and with |dt| = 1/500 that factor leaves [-1, 1] once var_t falls
  below about 1.2e-4: the last steps then shrink or amplify the spread. With the exact score of
  a 2-D Gaussian (2000 draws), data std 0.003 / 0.005 / 0.01 / 0.02 / 0.05 / 0.1 gave sample
  std 0.018 / 0.014 / 0.003 / 0.014 / 0.047 / 0.099. In absolute terms the samples stay about
  0.02 from the mode. The ODE and fast samplers, whose exponential or adaptive steps do not
  have this limit, gave 0.003 / 0.005 / 0.010 / 0.020 / 0.049 / 0.098 (ode) and
  0.003 / 0.005 / 0.010 / 0.020 / 0.049 / 0.097 (fast, 15 steps). So for near-deterministic
  (expert) actions, prefer ``sampler="fast"`` or ``"ode"``. (``benchmarks/pc_resolution.py``.)
* :func:`ode_sample`: the probability-flow ODE from a prior draw x_1 down to eps with dopri5
  (``likelihood.integrate_flow``). With a divergence it also integrates
  Delta = int_1^eps div f dt along the same path, so that one solve gives the sample and its
  log-likelihood log p_eps(x_eps) = log N(x_1; 0, I) - Delta.
* :func:`dpm_solve`: the fast sampler, a multistep DPM-Solver (Lu et al. 2022, noise-prediction
  form, orders 1-3) on a grid uniform in lambda = log(alpha/sigma), with one network
  evaluation per step. Optionally it evaluates the divergence at the same points and
  integrates it by a quadrature in lambda (see :func:`dpm_solve`), for an approximate
  log-likelihood. It runs in either direction, so it also gives a fast likelihood of given
  actions (t from eps up to 1).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from behavior_models.errors import ConfigError
from behavior_models.score.likelihood import Divergence, ScoreFn, integrate_flow, value_and_divergence
from behavior_models.score.sde import VPSDE


@torch.no_grad()
def pc_sample(sde: VPSDE, score_fn: ScoreFn, x: Tensor, *, steps: int = 500, snr: float = 0.16,
              t_end: float = 1e-3, corrector_steps: int = 1, langevin_step: str = "annealed",
              generator: torch.Generator | None = None) -> Tensor:
    """Predictor-corrector sampling from the prior draw ``x`` at t = 1; returns the mean at t_end."""
    times = torch.linspace(1.0, t_end, steps, device=x.device, dtype=x.dtype)
    dt = -1.0 / steps  # score_sde's predictor step: 1/N, whatever t_end
    # Corrector: alpha_i = 1 - beta_i of the DDPM discretisation, at index floor(t (N-1)) as score_sde.
    alphas = 1.0 - sde.discrete_betas(steps, device=x.device, dtype=x.dtype)
    alpha_at = alphas[(times * (steps - 1)).long()]
    tiny = torch.finfo(x.dtype).tiny
    x_mean = x
    for i in range(steps):
        t = times[i]
        for _ in range(corrector_steps):  # Langevin step; step-size rule: see the module docstring
            grad = score_fn(x, t)
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            if langevin_step == "annealed":
                ratio = snr * sde.sigma(t)
            elif langevin_step == "per-sample":
                ratio = snr * noise.norm(dim=-1, keepdim=True) / grad.norm(dim=-1, keepdim=True).clamp_min(tiny)
            elif langevin_step == "batch":
                ratio = snr * noise.norm(dim=-1).mean() / grad.norm(dim=-1).mean().clamp_min(tiny)
            else:
                raise ConfigError(f"langevin_step must be 'annealed', 'per-sample' or 'batch', got {langevin_step!r}")
            step_size = 2.0 * alpha_at[i] * ratio**2
            x = x + step_size * grad + torch.sqrt(2.0 * step_size) * noise
        # Euler-Maruyama on the reverse SDE dx = [f - g^2 score] dt + g dW-bar, with dt < 0.
        x_mean = x + sde.reverse_drift(x, t, score_fn(x, t)) * dt
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x = x_mean + torch.sqrt(sde.beta(t) * -dt) * noise  # g(t) sqrt(|dt|)
    return x_mean


@torch.no_grad()
def ode_sample(sde: VPSDE, score_fn: ScoreFn, x: Tensor, *, t_end: float = 1e-5,
               divergence: Divergence | None = "exact", probe: Tensor | None = None,
               rtol: float = 1e-5, atol: float = 1e-5) -> tuple[Tensor, Tensor | None]:
    """Solve the probability-flow ODE from the prior draw ``x`` at t = 1 to ``t_end``.

    Returns the sample and, when ``divergence`` is given, log p_{t_end}(sample) [N].
    """
    sample, delta = integrate_flow(sde, score_fn, x, 1.0, t_end, divergence=divergence, probe=probe,
                                   rtol=rtol, atol=atol)
    if delta is None:
        return sample, None
    return sample, sde.prior_log_prob(x) - delta


@functools.lru_cache(maxsize=32)
def _quadrature_weights_on(intervals: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """:func:`quadrature_weights` as a tensor, copied to ``device`` once, not at every solve (a
    host-to-device copy waits for the GPU's queue)."""
    return torch.tensor(quadrature_weights(intervals), device=device, dtype=dtype)


def quadrature_weights(intervals: int) -> list[float]:
    """Weights (in units of the step) of a composite rule on ``intervals`` equal steps.

    Simpson's rule, with Simpson's 3/8 rule on the last three intervals when the count is odd;
    the trapezoid for a single interval. Fourth-order accurate from 2 intervals on.
    """
    if intervals == 1:
        return [0.5, 0.5]
    weights = [0.0] * (intervals + 1)
    simpson = intervals if intervals % 2 == 0 else intervals - 3
    for k in range(0, simpson, 2):
        for j, w in zip((k, k + 1, k + 2), (1 / 3, 4 / 3, 1 / 3)):
            weights[j] += w
    if simpson != intervals:
        for j, w in zip(range(simpson, intervals + 1), (3 / 8, 9 / 8, 9 / 8, 3 / 8)):
            weights[j] += w
    return weights


@torch.no_grad()
def dpm_solve(sde: VPSDE, score_fn: ScoreFn, x: Tensor, t_start: float, t_end: float, *, steps: int = 15,
              order: int = 3, divergence: Divergence | None = None,
              probe: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Multistep DPM-Solver of the probability-flow ODE from t_start to t_end (either direction).

    With eps_theta = -sigma(t) score and h = lambda_{i+1} - lambda_i, the order-k update
    (Lu et al. 2022, multistep noise-prediction form) is

        x_{i+1} = (alpha_{i+1}/alpha_i) x_i - sigma_{i+1} [phi_1 e_i + phi_2 D1 + phi_3 D2],
        phi_1 = e^h - 1,  phi_2 = phi_1/h - 1,  phi_3 = phi_2/h - 1/2,

    where, on this uniform lambda grid, D1 = 3/2 (e_i - e_{i-1}) - 1/2 (e_{i-1} - e_{i-2}) ~ h eps'
    and D2 = (e_i - e_{i-1}) - (e_{i-1} - e_{i-2}) ~ h^2 eps'' (order 2 uses D1 = e_i - e_{i-1} and
    no D2). Order 1 on the first step, order 2 on the second; lower orders again on the last
    steps, as DPM-Solver's "lower_order_final".

    Why D2 is the whole second difference: the exponential integrator's eps'' term is
    sigma_{i+1} int_0^h e^(h-u) u^2/2 du eps'' = sigma_{i+1} h^2 phi_3 eps''. The public DPM-Solver
    code scales its second difference by 1/(r0 + r1) = 1/2 on a uniform grid, which supplies half
    of that term, so its "third-order" step converges at order 2 (an analytic Gaussian ODE, 10 ->
    80 steps: errors 1.4e-2, 1.3e-3, 3.1e-4, 7.6e-5 with the half, 1.3e-2, 4.4e-4, 7.1e-5, 1.6e-5
    with the whole; the first-order last step caps both at order 2 asymptotically).

    Divergence: along the ODE, div f = -1/2 beta A + 1/2 (beta/sigma) div eps_theta, and since
    d lambda/dt = -beta / (2 sigma^2),

        int_{t_start}^{t_end} div f dt = A [log alpha]_{t_start}^{t_end}
                                         - int_{lambda_start}^{lambda_end} sigma div eps_theta dlambda.

    The first term is exact; the second is integrated by :func:`quadrature_weights` on the same
    uniform lambda grid, from the divergence at every evaluation point plus one evaluation at
    the end (steps + 1 network evaluations). Returns (x_{t_end}, that integral or None).
    """
    device, dtype = x.device, x.dtype
    ends = torch.linspace(t_start, t_end, 2, device=device, dtype=dtype)  # made on the device: no host copy
    lam = torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=dtype)
    lam_ends = sde.marginal_lambda(ends)
    lam = lam_ends[0] + lam * (lam_ends[1] - lam_ends[0])
    times = sde.t_of_lambda(lam)
    times[0], times[-1] = ends[0], ends[1]
    log_alpha, sigma = sde.log_alpha(times), sde.sigma(times)
    h = lam[1] - lam[0]
    weights = _quadrature_weights_on(steps, device, dtype) * h

    def evaluate(y: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
        t = times[i]
        if divergence is None:
            return -sigma[i] * score_fn(y, t), None
        eps, div = value_and_divergence(lambda z: -sigma[i] * score_fn(z, t), y, divergence, probe)
        return eps, div

    history: list[Tensor] = []
    integral = None if divergence is None else x.new_zeros(x.shape[0])
    for i in range(steps):
        eps, div = evaluate(x, i)
        if div is not None:
            integral = integral - weights[i] * sigma[i] * div
        history = (history + [eps])[-3:]
        k = min(order, len(history), steps - i)
        phi_1 = torch.expm1(h)
        x_next = torch.exp(log_alpha[i + 1] - log_alpha[i]) * x - sigma[i + 1] * phi_1 * eps
        if k >= 2:
            phi_2 = phi_1 / h - 1.0
            d1_0 = history[-1] - history[-2]  # r0 = 1 on a uniform grid
            if k == 2:
                x_next = x_next - sigma[i + 1] * phi_2 * d1_0
            else:
                phi_3 = phi_2 / h - 0.5
                d1_1 = history[-2] - history[-3]
                d1 = d1_0 + 0.5 * (d1_0 - d1_1)
                d2 = d1_0 - d1_1
                x_next = x_next - sigma[i + 1] * (phi_2 * d1 + phi_3 * d2)
        x = x_next
    if divergence is not None:
        _, div = evaluate(x, steps)
        integral = integral - weights[steps] * sigma[steps] * div
        integral = integral + x.shape[-1] * (log_alpha[-1] - log_alpha[0])
    return x, integral


@torch.no_grad()
def fast_sample(sde: VPSDE, score_fn: ScoreFn, x: Tensor, *, steps: int = 15, order: int = 3,
                t_end: float = 1e-5, divergence: Divergence | None = None,
                probe: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The fast sampler: :func:`dpm_solve` from the prior draw ``x`` at t = 1 to ``t_end``.

    Returns the sample and, when ``divergence`` is given, its approximate log p_{t_end} [N].
    """
    sample, delta = dpm_solve(sde, score_fn, x, 1.0, t_end, steps=steps, order=order,
                              divergence=divergence, probe=probe)
    if delta is None:
        return sample, None
    return sample, sde.prior_log_prob(x) - delta


@torch.no_grad()
def fast_log_likelihood(sde: VPSDE, score_fn: ScoreFn, x: Tensor, *, eps: float = 1e-5, steps: int = 15,
                        order: int = 3, divergence: Divergence = "exact", probe: Tensor | None = None,
                        prior_log_prob=None) -> Tensor:
    """Approximate log p_eps(x): :func:`dpm_solve` from ``eps`` up to t = 1."""
    x1, delta = dpm_solve(sde, score_fn, x, eps, 1.0, steps=steps, order=order, divergence=divergence, probe=probe)
    return (prior_log_prob or sde.prior_log_prob)(x1) + delta
