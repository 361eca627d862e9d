"""MMD, the one-sided gradient penalty (seed 001, Eq. 8) and the Eq. 10 weight, against analytic values."""

import math

import numpy as np
import pytest
import torch

from rl.core.networks import QEnsemble
from rl.core.regularizers import critic_loss, gradient_penalty, minmax_weight, mmd


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_mmd_of_identical_sets_is_about_zero_and_grows_with_separation(kernel):
    torch.manual_seed(0)
    x = torch.rand(8, 6, 3) * 2 - 1
    assert mmd(x, x.clone(), kernel, sigma=1.0).max() <= 1.01e-3  # sqrt(eps): "about 0"
    shifts = [0.1, 0.3, 1.0, 3.0]
    values = [mmd(x, x + d, kernel, sigma=1.0).mean() for d in shifts]
    assert all(a < b for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("kernel, distance", [("laplacian", lambda d: d.abs().sum()), ("gaussian", lambda d: d.pow(2).sum())])
def test_mmd_of_two_points_uses_the_2_sigma_divisor(kernel, distance):
    # One sample each: MMD^2 = k(x,x) + k(y,y) - 2 k(x,y) = 2 - 2 exp(-dist / (2 sigma)).
    x, y, sigma = torch.tensor([[[0.2, -0.4]]]), torch.tensor([[[0.7, 0.1]]]), 0.3
    expected = math.sqrt(2 - 2 * math.exp(-float(distance(x - y)) / (2 * sigma)) + 1e-6)
    assert float(mmd(x, y, kernel, sigma)) == pytest.approx(expected, rel=1e-5)


class LinearQ(torch.nn.Module):
    """Q_e(s, a) = c * sum(a) for each of two members: ||grad_a Q|| = c sqrt(A) everywhere."""

    ensemble_size, act_dim = 2, 4

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward_members(self, obs, act):
        return self.c * act.sum(-1)


@pytest.mark.parametrize("c", [0.2, 0.5, 1.0, 3.0])
def test_gradient_penalty_of_a_linear_q_is_analytic(c):
    obs = torch.randn(5, 3)
    penalty = gradient_penalty(LinearQ(c), obs, n_actions=16, k=1.0)
    norm = c * math.sqrt(LinearQ.act_dim)
    expected = (norm - 1.0) ** 2 if norm > 1.0 else 0.0
    assert penalty.shape == (2,)
    assert torch.allclose(penalty, torch.full((2,), expected), atol=1e-6)



class QuadraticQ(torch.nn.Module):
    """Q_e(s, a) = c_e ||a||^2: ||grad_a Q_e|| = 2 c_e ||a||, so the penalty depends on where the actions are."""

    ensemble_size, act_dim = 2, 3
    c = torch.tensor([0.5, 2.0])

    def forward_members(self, obs, act):
        return self.c[:, None] * act.pow(2).sum(-1)


def test_gradient_penalty_averages_over_uniform_actions_with_its_threshold_k():
    # Seed 001, Eq. 8 with k = 0.8: E_{a ~ U[-1,1]^3}[ReLU(2 c ||a|| - k)^2], by Monte Carlo in NumPy.
    # Actions drawn from another box, or k ignored, move it by many standard errors.
    k, n_actions, batch = 0.8, 2048, 16
    torch.manual_seed(0)
    penalty = gradient_penalty(QuadraticQ(), torch.zeros(batch, 5), n_actions=n_actions, k=k).detach().numpy()
    norms = np.linalg.norm(np.random.default_rng(0).uniform(-1, 1, (1_000_000, 3)), axis=1)
    for member, c in enumerate(QuadraticQ.c.tolist()):
        values = np.maximum(2 * c * norms - k, 0.0) ** 2
        stderr = values.std() / math.sqrt(n_actions * batch)
        assert abs(penalty[member] - values.mean()) <= 4 * stderr + 1e-4, (member, penalty[member], values.mean())

def test_gradient_penalty_reaches_each_critics_weights():
    torch.manual_seed(0)
    critic = QEnsemble(3, 2, (16, 16), 2)
    with torch.no_grad():  # steep critics, so the one-sided penalty is active
        for p in critic.parameters():
            p.mul_(4.0)
    penalty = gradient_penalty(critic, torch.randn(8, 3))
    assert (penalty > 0).all()
    penalty.sum().backward()
    # With ReLU, grad_a Q is piecewise constant in the biases; every weight matrix shapes it.
    for name, p in critic.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and (p.grad.abs().sum(dim=(1, 2)) > 0).all(), name


def test_gradient_penalty_is_per_critic_not_summed():
    # Member 0 is flat (penalty 0), member 1 steep: a shared action input would mix them.
    torch.manual_seed(0)
    critic = QEnsemble(3, 2, (16,), 2)
    with torch.no_grad():
        critic.net[-1].weight[0].zero_()
        critic.net[-1].weight[1].mul_(100.0)
    penalty = gradient_penalty(critic, torch.randn(8, 3))
    assert penalty[0] == 0 and penalty[1] > 0


def test_minmax_weight_is_eq10_in_unit_interval_without_gradient():
    q = torch.tensor([-30.0, -10.0, -20.0, -25.0], requires_grad=True)  # negative Q (maze rewards r - 1)
    weight = minmax_weight(q)
    assert not weight.requires_grad
    assert torch.allclose(weight, torch.tensor([0.0, 1.0, 0.5, 0.25]), atol=1e-6)


class LinearEnsemble(torch.nn.Module):
    """Q_e(s, a) = c_e sum(a) for members c = (0.3, 2.0): ||grad_a Q_e|| = c_e sqrt(A), so Eq. 8 is
    (0, (2 sqrt(A) - 1)^2) exactly, whatever the random actions."""

    ensemble_size, act_dim = 2, 3
    slopes = torch.tensor([0.3, 2.0])

    def forward(self, obs, act):
        return self.slopes[:, None] * act.sum(-1)[None]

    def forward_members(self, obs, act):
        return self.slopes[:, None] * act.sum(-1)


@pytest.mark.parametrize("due", [True, False])
def test_critic_loss_adds_lambda_gp_times_eq8_when_due(due):
    """Seed 001, Eq. 8 added to TD3's critic loss: sum_j E[(Q_j - y)^2] + lambda_GP sum_j E[ReLU(||grad_a Q_j|| - k)^2],
    the penalty only on the updates it is due."""
    torch.manual_seed(0)
    obs, actions, target = torch.randn(6, 4), torch.rand(6, 3) * 2 - 1, torch.randn(6)
    weight = 0.7
    loss, metrics, q = critic_loss(LinearEnsemble(), obs, actions, target, penalty_weight=weight, penalty_due=due)
    slopes, a, y = [0.3, 2.0], actions.double().numpy(), target.double().numpy()
    mse = sum(np.mean((c * a.sum(-1) - y) ** 2) for c in slopes)
    penalty = sum(max(c * math.sqrt(3) - 1.0, 0.0) ** 2 for c in slopes)  # k = 1
    assert float(loss) == pytest.approx(mse + weight * penalty if due else mse, rel=1e-5)
    assert ("gradient_penalty" in metrics) == due
