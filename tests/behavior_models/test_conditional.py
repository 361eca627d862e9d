"""model(obs): a behavior model as a torch Distribution over the actions at each state."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Distribution

from behavior_models.errors import BehaviorModelsError, ConfigError
from behavior_models.gan import GANBehaviorModel, GANConfig
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.score.model import ScoreBehaviorModel, ScoreConfig

OBS_DIM, ACT_DIM, STATES = 3, 2, 5
MEAN, STD = np.array([0.3, -0.2]), np.array([0.1, 0.2])


def constant_gaussian() -> GaussianBehaviorModel:
    """beta(a|s) = N(MEAN, diag(STD^2)) at every state: the head's weights are zero, its bias
    holds the mean and the log-std."""
    model = GaussianBehaviorModel(OBS_DIM, ACT_DIM, GaussianConfig(hidden=(8,)))
    head = model.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.as_tensor(np.concatenate([MEAN, np.log(STD)]), dtype=torch.float32))
    return model.eval()


def state_dependent_gaussian() -> GaussianBehaviorModel:
    torch.manual_seed(3)
    return GaussianBehaviorModel(OBS_DIM, ACT_DIM, GaussianConfig(hidden=(8,))).eval()


def states(seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(STATES, OBS_DIM)), dtype=torch.float32)


def test_a_model_called_on_states_is_a_distribution_with_their_batch_shape():
    beta = constant_gaussian()(states())
    assert isinstance(beta, Distribution)
    assert beta.batch_shape == (STATES,) and beta.event_shape == (ACT_DIM,)
    assert beta.sample().shape == (STATES, ACT_DIM)
    assert beta.sample((7,)).shape == (7, STATES, ACT_DIM)
    assert beta.sample((2, 3)).shape == (2, 3, STATES, ACT_DIM)
    assert "backend=gaussian" in repr(beta)


def test_log_prob_is_the_analytic_gaussian_density():
    actions = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (4, STATES, ACT_DIM)), dtype=torch.float32)
    ours = constant_gaussian()(states()).log_prob(actions).detach().numpy()
    z = (actions.numpy() - MEAN) / STD
    truth = (-0.5 * z ** 2 - np.log(STD) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert ours.shape == (4, STATES)
    np.testing.assert_allclose(ours, truth, rtol=1e-5, atol=1e-5)


def test_samples_have_the_analytic_mean_and_spread():
    torch.manual_seed(0)
    draws = constant_gaussian()(states()).sample((4000,)).numpy()  # MEAN is 1.5 std or more inside the box
    np.testing.assert_allclose(draws.mean(axis=0), np.broadcast_to(MEAN, (STATES, ACT_DIM)), atol=0.015)
    np.testing.assert_allclose(draws.std(axis=0), np.broadcast_to(STD, (STATES, ACT_DIM)), rtol=0.05)


def test_the_layout_is_the_models_own_calls_reordered():
    model, obs = state_dependent_gaussian(), states(2)
    beta = model(obs)
    torch.manual_seed(5)
    draws = beta.sample((6,))  # [6, B, A]
    torch.manual_seed(5)
    np.testing.assert_array_equal(draws.numpy(), model.sample(obs, 6).transpose(0, 1).detach().numpy())
    log_probs = beta.log_prob(draws)
    masks = beta.support_mask(draws, threshold=-1.0)
    for i in range(6):
        for b in range(STATES):  # state b of sample i, scored alone
            one = model.log_prob(obs[b:b + 1], draws[i, b:b + 1])
            torch.testing.assert_close(log_probs[i, b:b + 1], one)
            assert masks[i, b] == bool(one >= -1.0)


def test_rsample_carries_gradients_where_the_backend_reparameterises():
    model = state_dependent_gaussian()
    model(states()).rsample((3,)).sum().backward()
    assert model.net[0].weight.grad is not None and model.net[0].weight.grad.abs().sum() > 0
    assert not model(states()).sample((3,)).requires_grad
    score = ScoreBehaviorModel(OBS_DIM, ACT_DIM, ScoreConfig(width=8, blocks=1))
    beta = score(states())
    with pytest.raises(NotImplementedError, match="score backend's samples are not reparameterised"):
        beta.rsample((2,))
    assert beta.sample((2,), sampler="fast", steps=2).shape == (2, STATES, ACT_DIM)  # options reach the model


def test_a_gan_offers_samples_and_support_but_no_log_density():
    beta = GANBehaviorModel(OBS_DIM, ACT_DIM, GANConfig(hidden=(8,)))(states())
    actions = beta.sample((3,))
    assert beta.support_mask(actions, threshold=0.0).shape == (3, STATES)
    with pytest.raises(NotImplementedError, match="gan backend's log_prob is an unnormalised score"):
        beta.log_prob(actions)


def test_no_samples_is_an_empty_batch_and_options_are_still_checked():
    beta = constant_gaussian()(states())
    none = beta.sample((0,))
    assert none.shape == (0, STATES, ACT_DIM)
    assert beta.log_prob(none).shape == (0, STATES) and beta.support_mask(none).dtype == torch.bool
    with pytest.raises(ConfigError, match="its sample takes no 'sampler'"):
        beta.sample((0,), sampler="fast")


def test_actions_of_the_wrong_shape_are_refused_with_the_shape_expected():
    beta = constant_gaussian()(states())
    with pytest.raises(BehaviorModelsError, match=r"shape \[\.\.\., 5, 2\] .* got \[4, 2\]"):
        beta.log_prob(torch.zeros(4, ACT_DIM))
    with pytest.raises(BehaviorModelsError, match="got ndarray"):
        beta.support_mask(np.zeros((STATES, ACT_DIM)))
