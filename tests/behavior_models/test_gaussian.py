import math

import numpy as np
import pytest
import torch

from behavior_models.base import InputError
from behavior_models.errors import BehaviorModelsError, ConfigError
from behavior_models.data import load_transitions
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from tests.helpers import gaussian_log_density, gaussian_mean_std, write_conditional_gaussian_dataset


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("gauss_data")))
        write_conditional_gaussian_dataset("test/gauss-fit-v0", episodes=200, steps=100)
        data = load_transitions("test/gauss-fit-v0")
    config = GaussianConfig(steps=4000, batch_size=256, lr=2e-3, hidden=(64, 64))
    return GaussianBehaviorModel.fit(data, config, progress=False), data


def test_log_prob_matches_the_analytic_density(fitted):
    model, _ = fitted
    rng = np.random.default_rng(123)
    obs = rng.uniform(-1, 1, (2000, 2))
    mean, std = gaussian_mean_std(obs)
    act = mean + std * rng.normal(size=mean.shape)
    truth = gaussian_log_density(obs, act)
    ours = model.log_prob(torch.tensor(obs, dtype=torch.float32), torch.tensor(act, dtype=torch.float32)).detach().numpy()
    assert np.mean(np.abs(ours - truth)) <= 0.1


def test_grad_log_prob_matches_finite_differences(fitted):
    model, data = fitted
    obs = torch.as_tensor(data.observations[:16]).double()
    act = torch.as_tensor(data.actions[:16]).double()
    model = model.double()
    try:
        grad = model.grad_log_prob(obs, act)
        eps = 1e-6
        for dim in range(act.shape[1]):
            shift = torch.zeros_like(act)
            shift[:, dim] = eps
            numeric = (model.log_prob(obs, act + shift) - model.log_prob(obs, act - shift)) / (2 * eps)
            torch.testing.assert_close(grad[:, dim], numeric, rtol=1e-5, atol=1e-5)
    finally:
        model.float()


def test_support_mask_separates_data_from_far_actions(fitted):
    model, data = fitted
    obs = torch.as_tensor(data.observations[:1000])
    act = torch.as_tensor(data.actions[:1000])
    assert model.support_mask(obs, act).float().mean() >= 0.95
    # In-box actions 0.6 >= 4.4 sigma (sigma <= 0.135) from the conditional mean on every axis
    # (|mean| <= 0.6, so mean -+ 0.6 stays inside the box).
    mean, _ = gaussian_mean_std(data.observations[:1000].astype(np.float64))
    far = torch.as_tensor(np.where(mean > 0, mean - 0.6, mean + 0.6), dtype=torch.float32)
    assert np.abs(far.numpy() - mean).min() >= 4 * 0.135 and far.abs().max() <= 1
    assert (~model.support_mask(obs, far)).float().mean() >= 0.95


def test_samples_are_clipped_and_shaped(fitted):
    model, data = fitted
    samples = model.sample(torch.as_tensor(data.observations[:5]), 7)
    assert samples.shape == (5, 7, 3) and samples.abs().max() <= 1


def test_wrong_inputs_give_clear_errors(fitted):
    model, _ = fitted
    obs = torch.zeros(4, 2)
    with pytest.raises(InputError, match=r"shape \[B, 3\]"):
        model.log_prob(obs, torch.zeros(4, 2))
    with pytest.raises(InputError, match="floating-point"):
        model.log_prob(obs, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(InputError, match="torch.Tensor"):
        model.sample(np.zeros((4, 2)), 2)
    with pytest.raises(InputError, match="same batch size"):
        model.log_prob(obs, torch.zeros(5, 3))
    with pytest.raises(InputError, match="is on meta"):
        model.log_prob(obs.to("meta"), torch.zeros(4, 3, device="meta"))


def test_capabilities():
    caps = GaussianBehaviorModel.capabilities()
    assert caps == {"log_prob_kind": "exact", "differentiable_log_prob": True, "native_grad_log_prob": False,
                    "grad_log_prob": True, "reparameterized_sample": True}


def test_sample_and_log_prob_scores_the_returned_actions(fitted):
    model, data = fitted
    obs = torch.as_tensor(data.observations[:6])
    actions, log_probs = model.sample_and_log_prob(obs, 5)
    assert actions.shape == (6, 5, 3) and log_probs.shape == (6, 5)
    expected = model.log_prob(obs.repeat_interleave(5, 0), actions.reshape(30, 3)).reshape(6, 5)
    torch.testing.assert_close(log_probs, expected)


def test_support_mask_uses_the_stored_threshold_and_refuses_an_uncalibrated_model(fitted):
    model, data = fitted
    obs, act = torch.as_tensor(data.observations[:500]), torch.as_tensor(data.actions[:500])
    saved = model.support_threshold.clone(), model.threshold_source
    try:
        log_probs = model.log_prob(obs, act).detach()
        median = float(log_probs.median())
        model.calibrate(data, absolute=median)
        assert torch.equal(model.support_mask(obs, act), log_probs >= median)
        model.support_threshold.fill_(float("nan"))
        model.threshold_source = "none"
        with pytest.raises(BehaviorModelsError, match="no support threshold"):
            model.support_mask(obs, act)
    finally:
        model.support_threshold.copy_(saved[0])
        model.threshold_source = saved[1]


def test_log_std_bounds_in_the_wrong_order_are_refused():
    # torch.clamp with min > max returns max everywhere: the fit would have a constant std of e^-5.
    with pytest.raises(ConfigError, match=r"log_std_min \(2.0\) must be <= log_std_max \(-5.0\)"):
        GaussianConfig(log_std_min=2.0, log_std_max=-5.0)


def test_the_predicted_log_std_is_clamped_to_the_configured_bounds():
    """A head that predicts log-std -20 and +10 scores like N(mu, e^-5) and N(mu, e^2) (the bounds),
    computed by hand; without the clamp the density of a fit that collapses a dimension is unbounded."""
    model = GaussianBehaviorModel(1, 2, GaussianConfig(hidden=(4,), log_std_min=-5.0, log_std_max=2.0))
    head = model.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.2, -0.4, -20.0, 10.0]))  # means, then log-stds
    act = torch.tensor([[0.2 + 3e-3, 0.5]])
    z = np.array([3e-3 / np.exp(-5.0), 0.9 / np.exp(2.0)])
    expected = float(np.sum(-0.5 * z**2 - np.array([-5.0, 2.0]) - 0.5 * np.log(2 * np.pi)))
    log_p = model.log_prob(torch.zeros(1, 1), act).detach()
    assert float(log_p) == pytest.approx(expected, abs=1e-4)


def test_samples_of_each_state_follow_that_states_gaussian():
    """A linear head (no hidden layer) with known weights: mean(s) = 0.5 s (per action dim) and std
    e^-2.5, so each state's samples must have that state's mean and std. Checked on states far apart:
    samples assigned to the wrong rows ([n, B] reshaped rather than transposed) passed the
    shape-only checks."""
    model = GaussianBehaviorModel(1, 2, GaussianConfig(hidden=()))
    with torch.no_grad():
        model.net[-1].weight.copy_(torch.tensor([[0.5], [-0.5], [0.0], [0.0]]))
        model.net[-1].bias.copy_(torch.tensor([0.0, 0.0, -2.5, -2.5]))
    obs = torch.tensor([[-1.2], [0.0], [1.2]])
    torch.manual_seed(0)
    samples = model.sample(obs, 4000).detach().double()
    expected_mean = torch.tensor([[-0.6, 0.6], [0.0, 0.0], [0.6, -0.6]], dtype=torch.float64)
    std = math.exp(-2.5)
    torch.testing.assert_close(samples.mean(1), expected_mean, rtol=0, atol=4 * std / math.sqrt(4000))
    torch.testing.assert_close(samples.std(1), torch.full((3, 2), std, dtype=torch.float64), rtol=0.05, atol=0)
