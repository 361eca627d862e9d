"""Log-likelihood through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

The probability-flow ODE of the VP-SDE (``score.sde``) is

    dx/dt = f(x, t) = -1/2 beta(t) x - 1/2 beta(t) score(x, t),

and the instantaneous change of variables gives, integrating forward from eps to 1,

    log p_eps(x_eps) = log p_1(x_1) + int_eps^1 div_x f(x_t, t) dt,

with p_1 the prior N(0, I). Everything here takes a ``score_fn(x [N, A], t 0-d) -> [N, A]``
whose rows are independent (the condition, e.g. the state, is bound inside it), so the same
code scores a trained network or a closed-form score (the tests).

Divergence, :func:`value_and_divergence`:

* ``"exact"``: the A diagonal Jacobian entries, from A forward-mode Jacobian-vector products
  with the basis vectors, batched with ``torch.func.vmap`` over the basis (A network passes'
  worth of work in one batched call);
* ``"hutchinson"``: v^T J v with one Rademacher probe v per row, fixed for the whole solve
  (unbiased; ``ScoreBehaviorModel.log_prob(probes=...)`` averages several solves with
  independent probes for a lower variance).

Solvers, :func:`log_likelihood`:

* ``"dopri5"``: ``torchdiffeq.odeint``, the whole batch as one ODE on the device. The error
  norm is the *maximum over rows* of each row's RMS error (:func:`per_sample_norm`), so every
  row meets the tolerance on its own (torchdiffeq's default RMS over the whole state would let
  one bad row hide in the mean). The step sizes are shared, so a row's result still depends on
  its batch-mates, within that tolerance.
  Inside the solve only torchdiffeq's step control reads scalars on the host (step
  acceptance, the next step size, its finiteness checks: a few per step); the state and the
  network evaluations stay on the device.
* ``"scipy-rk45"``: the reference, built as score_sde builds it: the whole batch flattened
  into one float64 vector and integrated by ``scipy.integrate.solve_ivp(method="RK45")``,
  with host<->device copies at every evaluation. Its error norm is scipy's RMS over the
  whole flattened state.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from scipy import integrate
from torch import Tensor
from torch.func import jvp, vmap
from torchdiffeq import odeint

from behavior_models.errors import ConfigError
from behavior_models.score.sde import VPSDE

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Divergence = Literal["exact", "hutchinson"]
DIVERGENCES = ("exact", "hutchinson")


def rademacher(shape: tuple[int, ...], *, device=None, dtype=None, generator=None) -> Tensor:
    """Entries +-1 with probability 1/2 each."""
    bits = torch.randint(0, 2, shape, device=device, generator=generator)
    return (2 * bits - 1).to(dtype or torch.get_default_dtype())


def value_and_divergence(fn: Callable[[Tensor], Tensor], x: Tensor, divergence: Divergence,
                         probe: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(fn(x) [N, A], div_x fn(x) [N]) for a row-wise ``fn``; see the module docstring."""
    if divergence == "exact":
        basis = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)[:, None, :].expand(-1, *x.shape)
        value, columns = vmap(lambda v: jvp(fn, (x,), (v,)), out_dims=(None, 0))(basis)  # columns [A, N, A]
        return value, columns.diagonal(dim1=0, dim2=2).sum(-1)
    if divergence == "hutchinson":
        if probe is None:
            raise ConfigError("the Hutchinson divergence needs a probe (one Rademacher vector per row)")
        value, jv = jvp(fn, (x,), (probe,))
        return value, (jv * probe).sum(-1)
    raise ConfigError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


def flow_drift(sde: VPSDE, score_fn: ScoreFn, t: Tensor) -> Callable[[Tensor], Tensor]:
    """x -> f(x, t) = -1/2 beta(t) (x + score(x, t)), the probability-flow drift at time t."""
    return lambda x: sde.probability_flow_drift(x, t, score_fn(x, t))


def per_sample_norm(state: tuple[Tensor, Tensor]) -> Tensor:
    """Max over rows of the RMS of (x row, delta entry): every row meets the tolerance."""
    x, delta = state
    squares = torch.cat([x.reshape(x.shape[0], -1) ** 2, delta.reshape(-1, 1) ** 2], dim=1)
    return squares.mean(dim=1).sqrt().max()


def integrate_flow(sde: VPSDE, score_fn: ScoreFn, x: Tensor, t0: float, t1: float, *,
                   divergence: Divergence | None = "exact", probe: Tensor | None = None,
                   rtol: float = 1e-5, atol: float = 1e-5) -> tuple[Tensor, Tensor | None]:
    """Solve the probability-flow ODE from t0 to t1 with dopri5 (either direction).

    Returns x_{t1} and int_{t0}^{t1} div f(x_t, t) dt ([N]), or None when ``divergence`` is None
    (a sample-only solve of x alone).
    """
    times = torch.tensor([t0, t1], device=x.device, dtype=x.dtype)
    # Steps must land on t1, not overshoot it: past t = 0 the VP marginal std is undefined.
    options = {"step_t": times[1:]}
    if divergence is None:
        def rhs_x(t: Tensor, y: Tensor) -> Tensor:
            return flow_drift(sde, score_fn, t)(y)
        norm = lambda y: y.reshape(y.shape[0], -1).pow(2).mean(1).sqrt().max()  # noqa: E731
        path = odeint(rhs_x, x, times, method="dopri5", rtol=rtol, atol=atol, options={"norm": norm, **options})
        return path[-1], None

    def rhs(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return value_and_divergence(flow_drift(sde, score_fn, t), state[0], divergence, probe)

    xs, deltas = odeint(rhs, (x, x.new_zeros(x.shape[0])), times, method="dopri5", rtol=rtol, atol=atol,
                        options={"norm": per_sample_norm, **options})
    return xs[-1], deltas[-1]


def _scipy_rk45(sde: VPSDE, score_fn: ScoreFn, x: Tensor, eps: float, divergence: Divergence,
                probe: Tensor | None, rtol: float, atol: float) -> tuple[Tensor, Tensor]:
    """score_sde's reference: the batch flattened into one float64 ODE for solve_ivp RK45."""
    rows, dim = x.shape

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        state = torch.as_tensor(y[: rows * dim].reshape(rows, dim), device=x.device, dtype=x.dtype)
        t_tensor = torch.tensor(t, device=x.device, dtype=x.dtype)
        drift, div = value_and_divergence(flow_drift(sde, score_fn, t_tensor), state, divergence, probe)
        return np.concatenate([drift.detach().cpu().double().numpy().ravel(), div.detach().cpu().double().numpy()])

    start = np.concatenate([x.detach().cpu().double().numpy().ravel(), np.zeros(rows)])
    solution = integrate.solve_ivp(rhs, (eps, 1.0), start, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"scipy solve_ivp failed: {solution.message}")
    end = torch.as_tensor(solution.y[:, -1], device=x.device, dtype=x.dtype)
    return end[: rows * dim].reshape(rows, dim), end[rows * dim:]


@torch.no_grad()
def log_likelihood(sde: VPSDE, score_fn: ScoreFn, x: Tensor, *, eps: float = 1e-5,
                   solver: Literal["dopri5", "scipy-rk45"] = "dopri5", divergence: Divergence = "exact",
                   rtol: float = 1e-5, atol: float = 1e-5, probe: Tensor | None = None,
                   generator: torch.Generator | None = None,
                   prior_log_prob: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """log p_eps(x) [N] in nats, by the probability-flow ODE from ``eps`` to 1.

    ``prior_log_prob`` defaults to the standard normal N(0, I); the tests pass the exact t = 1
    marginal of a known distribution instead. For the Hutchinson divergence a Rademacher probe
    is drawn from ``generator`` unless ``probe`` is given; it is held fixed for the solve.
    """
    if divergence not in DIVERGENCES:
        raise ConfigError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if divergence == "hutchinson" and probe is None:
        probe = rademacher(tuple(x.shape), device=x.device, dtype=x.dtype, generator=generator)
    if solver == "dopri5":
        x1, delta = integrate_flow(sde, score_fn, x, eps, 1.0, divergence=divergence, probe=probe,
                                   rtol=rtol, atol=atol)
    elif solver == "scipy-rk45":
        x1, delta = _scipy_rk45(sde, score_fn, x, eps, divergence, probe, rtol, atol)
    else:
        raise ConfigError(f"solver must be 'dopri5' or 'scipy-rk45' here, got {solver!r}")
    prior = prior_log_prob or sde.prior_log_prob
    return prior(x1) + delta
