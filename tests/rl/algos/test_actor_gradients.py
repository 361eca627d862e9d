"""The actor gradients of TD3+BC (seed 001, Eq. 4) and SPOT (seed 004, Eq. 9) against analytic values.

Both scale Q by 1 / mean|Q| *detached* (TD3+BC's normalisation): a constant of the step, not a
function of the policy. The value of the loss is the same whether or not the normaliser is
detached, so the golden value tests cannot tell; its gradient is not. With a linear stub critic
Q(s, a) = c sum(a) + b and a stub policy whose actions are the parameters, the gradient is known
in closed form: with every Q > 0, a normaliser left in the graph makes mean Q / mean|Q| = 1, a
constant, and the Q term's gradient vanishes.
"""

import numpy as np
import pytest
import torch
from torch import nn

from rl.algos.base import BehaviorInputs
from rl.algos.spot import SPOT, SPOTConfig
from rl.algos.td3bc import TD3BC, TD3BCConfig
from tests.rl.algos.test_dasco import StubPolicy  # the given actions, as a parameter
from tests.rl.algos.test_golden import A, B, S, fixed_batch, gaussian_model

C, BIAS = 1.5, 4.0  # Q(s, a) = C sum(a) + BIAS > 0 on the box (A = 2)


class LinearCritic(nn.Module):
    def forward(self, obs, act):
        q = C * act.sum(-1) + BIAS
        return torch.stack([q, q + 1.0])


def policy_actions():
    return torch.as_tensor(np.random.default_rng(3).uniform(-0.9, 0.9, (B, A)), dtype=torch.float32)


def test_td3bc_actor_gradient_is_eq4_with_a_constant_q_scale():
    """L = -alpha mean_B Q / mean|Q| + mean_B mean_A (pi - a)^2, mean|Q| held constant:
    dL/dpi_ij = -alpha C / (mean|Q| B) + 2 (pi_ij - a_ij) / (A B)."""
    batch = fixed_batch(np.random.default_rng(0))
    alpha = 2.5
    algo = TD3BC(TD3BCConfig(hidden=(8,), alpha=alpha), S, A, behavior=BehaviorInputs())
    algo.actor, algo.critic = StubPolicy(policy_actions()), LinearCritic()
    loss, _ = algo.actor_loss(batch)
    loss.backward()

    pi, act = policy_actions().double().numpy(), batch.actions.double().numpy()
    q = C * pi.sum(-1) + BIAS
    expected = -alpha * C / (np.abs(q).mean() * B) + 2 * (pi - act) / (A * B)
    np.testing.assert_allclose(algo.actor.actions.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("q_normalization", [True, False])
def test_spot_actor_gradient_of_the_q_term_uses_a_constant_q_scale(q_normalization):
    """SPOT with lambda = 0: L = -mean_B Q / mean|Q| (or -mean_B Q without the normalisation), so
    dL/dpi_ij = -C / (mean|Q| B) (or -C / B)."""
    batch = fixed_batch(np.random.default_rng(0))
    algo = SPOT(SPOTConfig(hidden=(8,), lambda_=0.0, lambda_units="nats", q_normalization=q_normalization), S, A,
                behavior=BehaviorInputs(model=gaussian_model()))
    algo.actor, algo.critic = StubPolicy(policy_actions()), LinearCritic()
    loss, _ = algo.actor_loss(batch)
    loss.backward()

    pi = policy_actions().double().numpy()
    scale = 1.0 / np.abs(C * pi.sum(-1) + BIAS).mean() if q_normalization else 1.0
    expected = np.full((B, A), -C * scale / B)
    np.testing.assert_allclose(algo.actor.actions.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)
