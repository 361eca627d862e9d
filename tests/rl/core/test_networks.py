import copy
import math

import numpy as np
import torch

import pytest

from rl.core.networks import (DeterministicActor, EnsembleLinear, GaussianActor, QEnsemble, TanhGaussianActor,
                              evaluation_mode, soft_update)


def test_q_ensemble_equals_each_member_computed_alone():
    torch.manual_seed(0)
    q = QEnsemble(5, 3, hidden=(16, 8), ensemble_size=3)
    obs, act = torch.randn(7, 5), torch.randn(7, 3)
    out = q(obs, act)
    assert out.shape == (3, 7)
    layers = [m for m in q.net if isinstance(m, EnsembleLinear)]
    for member in range(3):
        x = torch.cat([obs, act], 1)
        for i, layer in enumerate(layers):
            x = x @ layer.weight[member] + layer.bias[member, 0]
            if i < len(layers) - 1:
                x = torch.relu(x)
        torch.testing.assert_close(out[member], x[:, 0])


def test_q_ensemble_broadcasts_leading_dims():
    q = QEnsemble(4, 2, hidden=(8,), ensemble_size=2)
    obs, act = torch.randn(3, 5, 4), torch.randn(3, 5, 2)
    out = q(obs, act)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[:, 1], q(obs[1], act[1]))


def test_members_start_different_and_train_independently():
    torch.manual_seed(0)
    q = QEnsemble(2, 1, hidden=(8,), ensemble_size=2)
    out = q(torch.randn(4, 2), torch.randn(4, 1))
    assert not torch.allclose(out[0], out[1])
    before = [p.detach().clone() for p in q.parameters()]
    optimizer = torch.optim.SGD(q.parameters(), lr=0.1)
    q(torch.randn(4, 2), torch.randn(4, 1))[0].pow(2).sum().backward()  # a loss of member 0 only
    optimizer.step()
    for old, new in zip(before, q.parameters()):  # parameters are stacked [E, ...]: member index first
        assert not torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])


def test_head_init_bounds_only_the_output_layer():
    """SPOT's AntMaze networks (actor_init_w, critic_init_w): the output layer is redrawn from
    U(-w, w), the hidden layers keep nn.Linear's initialisation; w = 0 changes nothing."""
    torch.manual_seed(0)
    default_actor = DeterministicActor(6, 3, (64, 64))
    torch.manual_seed(0)
    small_actor = DeterministicActor(6, 3, (64, 64), head_init=1e-3)
    torch.manual_seed(0)
    critic = QEnsemble(6, 3, (64, 64), 2, head_init=3e-3)
    for head, bound in ((small_actor.net[-1], 1e-3), (critic.net[-1], 3e-3)):
        for p in (head.weight, head.bias):
            assert p.abs().max() <= bound and p.abs().max() > bound / 2
    torch.testing.assert_close(small_actor.net[0].weight, default_actor.net[0].weight)
    assert default_actor.net[-1].weight.abs().max() > 1e-2  # U(+-1/sqrt(64)) otherwise
    torch.manual_seed(0)
    torch.testing.assert_close(DeterministicActor(6, 3, (64, 64), head_init=0.0).net[-1].weight,
                               default_actor.net[-1].weight)
    with pytest.raises(ValueError, match=">= 0"):
        DeterministicActor(6, 3, (64, 64), head_init=-1.0)


def test_actor_dropout_trains_stochastic_and_acts_deterministic():
    """SPOT's locomotion actor: dropout on the hidden units while training; evaluation_mode acts
    with the full network, and restores the training mode after."""
    torch.manual_seed(0)
    actor = DeterministicActor(5, 2, (64, 64), dropout=0.5)
    obs = torch.randn(16, 5)
    assert sum(isinstance(m, torch.nn.Dropout) for m in actor.net) == 2
    assert not torch.equal(actor(obs), actor(obs))  # a fresh mask per call
    with evaluation_mode(actor):
        acted = actor(obs)
        torch.testing.assert_close(actor(obs), acted)
    assert actor.training
    x = obs
    for layer in (actor.net[0], actor.net[3]):  # the Linear layers, without the dropout between them
        x = torch.relu(layer(x))
    torch.testing.assert_close(acted, torch.tanh(actor.net[-1](x)))
    with pytest.raises(ValueError, match="dropout"):
        DeterministicActor(5, 2, (8,), dropout=1.0)


def test_soft_update_is_polyak_average():
    source = torch.nn.Linear(3, 2)
    target = copy.deepcopy(source)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.1)
    for b, t, s in zip(before, target.parameters(), source.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, hidden=(8,))
    obs = torch.randn(4, 3)
    actions = actor.sample(obs, 5)
    assert actions.shape == (4, 5, 2) and actions.abs().max() < 1
    log_probs = actor.log_prob(obs.repeat_interleave(5, 0), actions.reshape(-1, 2)).reshape(4, 5)
    # Independent recomputation: log N(u; mu, sigma) - sum log(1 - tanh(u)^2).
    dist = actor.base_distribution(obs)
    mean, std = dist.base_dist.loc.detach().numpy(), dist.base_dist.scale.detach().numpy()
    a = actions.detach().numpy().astype(np.float64)
    u = np.arctanh(a)
    gauss = (-0.5 * ((u - mean[:, None]) / std[:, None]) ** 2 - np.log(std[:, None]) - 0.5 * math.log(2 * math.pi)).sum(-1)
    expected = gauss - np.log(1 - a**2).sum(-1)
    np.testing.assert_allclose(log_probs.detach().numpy(), expected, rtol=1e-3, atol=1e-3)


def test_gaussian_actor_std_is_state_independent():
    actor = GaussianActor(3, 2, hidden=(8,))
    d1, d2 = actor.distribution(torch.zeros(1, 3)), actor.distribution(torch.ones(1, 3))
    torch.testing.assert_close(d1.base_dist.scale, d2.base_dist.scale)
    assert actor(torch.zeros(4, 3), deterministic=False).abs().max() <= 1


def test_deterministic_actions_are_the_policy_means():
    """Evaluation acts deterministically by default (RunConfig.eval_deterministic): the AWR Gaussian's
    mean tanh(mu(s)) (seed 002, App. A.2) and the tanh-Gaussian's tanh(mu(s)) (BEAR, DASCO), from the
    weights in NumPy; a sample would move with the RNG."""
    from tests.rl.algos.test_golden import np_mlp

    torch.manual_seed(0)
    obs = torch.randn(6, 3)
    gaussian, tanh_gaussian = GaussianActor(3, 2, hidden=(8,)), TanhGaussianActor(3, 2, hidden=(8,))
    with torch.no_grad():
        gaussian.log_std.fill_(0.5)  # wide, so that a sample is far from the mean
    expected_mean = np.tanh(np_mlp(gaussian.net, obs.numpy()))
    expected_tanh_mean = np.tanh(np_mlp(tanh_gaussian.net, obs.numpy())[:, :2])
    for _ in range(2):
        np.testing.assert_allclose(gaussian(obs, deterministic=True).detach().numpy(), expected_mean, atol=1e-6)
        np.testing.assert_allclose(tanh_gaussian(obs, deterministic=True).detach().numpy(), expected_tanh_mean,
                                   atol=1e-6)
