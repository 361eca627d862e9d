import numpy as np
import pytest
import torch

from behavior_models.score.sampling import quadrature_weights
from behavior_models.score.sde import VPSDE

SDE = VPSDE()


def test_marginal_coefficients_match_the_closed_form():
    t = torch.linspace(1e-5, 1.0, 50, dtype=torch.float64)
    log_alpha = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    torch.testing.assert_close(SDE.alpha(t), log_alpha.exp())
    torch.testing.assert_close(SDE.sigma(t) ** 2 + SDE.alpha(t) ** 2, torch.ones_like(t))
    # d log alpha / dt = -beta / 2, the drift coefficient.
    h = 1e-6
    torch.testing.assert_close((SDE.log_alpha(t + h) - SDE.log_alpha(t - h)) / (2 * h), -0.5 * SDE.beta(t))


def test_t_of_lambda_inverts_lambda():
    t = torch.logspace(-5, 0, 40, dtype=torch.float64)
    torch.testing.assert_close(SDE.t_of_lambda(SDE.marginal_lambda(t)), t, rtol=1e-9, atol=0)


def test_discrete_betas_are_the_ddpm_schedule():
    betas = SDE.discrete_betas(500)
    assert betas.shape == (500,)
    # DDPM's linear schedule (score_sde's VPSDE.discrete_betas): beta_min/N to beta_max/N, evenly spaced.
    expected = np.linspace(0.1 / 500, 20.0 / 500, 500)
    np.testing.assert_allclose(betas.double().numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("intervals", [1, 2, 3, 4, 5, 9, 20])
def test_quadrature_weights_integrate_polynomials(intervals):
    nodes = torch.linspace(0.0, 1.0, intervals + 1, dtype=torch.float64)
    weights = torch.tensor(quadrature_weights(intervals), dtype=torch.float64) / intervals
    degree = 1 if intervals == 1 else 3
    for power in range(degree + 1):
        assert float((weights * nodes**power).sum()) == pytest.approx(1.0 / (power + 1), abs=1e-12)
