"""GAN building blocks (shared with DASCO): instance-noise schedule, LSGAN loss, generator."""

import math

import pytest
import torch

from behavior_models.errors import ConfigError
from behavior_models.gan import (
    ConditionalGenerator, Discriminator, GANBehaviorModel, GANConfig, add_instance_noise, generator_loss,
    instance_noise_std, lsgan_discriminator_loss, mode_seeking_loss,
)


def test_capabilities_declare_an_unnormalised_score():
    caps = GANBehaviorModel.capabilities()
    assert caps["log_prob_kind"] == "unnormalized" and caps["grad_log_prob"] is True


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
def test_instance_noise_starts_at_0_3_is_annealed_and_clamped(schedule):
    stds = [instance_noise_std(step, 100, 0.3, 0.0, schedule) for step in range(0, 101, 10)]
    assert stds[0] == pytest.approx(0.3)
    assert all(a >= b for a, b in zip(stds, stds[1:])) and stds[-1] < 0.01
    # A quarter of the way, by hand: 0.3 - 0.075; 0.15 (1 + cos(pi/4)); 0.3 (1e-3)^(1/4) (floor 1e-3 x initial).
    quarter = {"linear": 0.225, "cosine": 0.15 * (1 + math.sqrt(0.5)), "exponential": 0.3 * 1e-3 ** 0.25}[schedule]
    assert instance_noise_std(25, 100, 0.3, 0.0, schedule) == pytest.approx(quarter)
    assert instance_noise_std(0, 100, initial=0.8, clamp=0.3) == 0.3
    assert instance_noise_std(50, 100, schedule="constant") == 0.3
    with pytest.raises(ConfigError, match="schedule"):
        instance_noise_std(0, 10, schedule="step")


def test_instance_noise_draws_are_clamped():
    torch.manual_seed(0)
    act = torch.zeros(10_000, 2)
    noisy = add_instance_noise(act, std=0.3, clamp=0.3)
    # N(0, 0.3^2) clamped at +-1 std has std 0.3 * sqrt(1 - 2 phi(1)) = 0.3 * 0.7184.
    expected = 0.3 * math.sqrt(1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi))
    assert noisy.abs().max() <= 0.3 + 1e-7 and float(noisy.std()) == pytest.approx(expected, abs=0.01)
    assert add_instance_noise(act, 0.0) is act


def test_lsgan_and_generator_losses_match_hand_computation():
    real, fake, uniform = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0]), torch.tensor([3.0, 0.0])
    s = torch.sigmoid
    expected = (0.5 * ((s(real) - 1) ** 2).mean() + 0.5 * (s(fake) ** 2).mean() + 0.25 * 0.5 * (s(uniform) ** 2).mean())
    torch.testing.assert_close(lsgan_discriminator_loss(real, fake, uniform, fake_weights=(1.0, 0.25)), expected)
    torch.testing.assert_close(generator_loss(fake), -torch.log(s(fake)).mean())


def test_mode_seeking_loss_is_msgan_eq_3():
    """Mao et al. 2019, Eq. 3: 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps), smaller when
    different noise gives more different actions."""
    a1, a2 = torch.tensor([[0.1, 0.5], [0.0, -0.2]]), torch.tensor([[0.3, 0.1], [0.1, -0.2]])
    z1, z2 = torch.tensor([[1.0, 0.0], [2.0, 1.0]]), torch.tensor([[0.0, 0.0], [0.0, -1.0]])
    ratio = (0.2 + 0.4 + 0.1 + 0.0) / 4 / ((1.0 + 0.0 + 2.0 + 2.0) / 4)
    torch.testing.assert_close(mode_seeking_loss(a1, a2, z1, z2), torch.tensor(1 / (ratio + 1e-5)))
    assert mode_seeking_loss(a1, a1 * 3, z1, z2) < mode_seeking_loss(a1, a2, z1, z2)
    with pytest.raises(ConfigError, match="mode_seeking_weight must be >= 0"):
        GANBehaviorModel(2, 2, GANConfig(mode_seeking_weight=-1.0))


def test_building_blocks_shapes_and_range():
    torch.manual_seed(0)
    generator, discriminator = ConditionalGenerator(3, 2, noise_dim=4, hidden=(16,)), Discriminator(3, 2, hidden=(16,))
    obs = torch.randn(5, 3)
    samples = generator.sample(obs, 7)
    assert samples.shape == (5, 7, 2) and samples.abs().max() < 1
    probs = discriminator(obs, samples[:, 0])
    assert probs.shape == (5,) and ((probs > 0) & (probs < 1)).all()
    torch.testing.assert_close(torch.sigmoid(discriminator(obs, samples[:, 0], return_logit=True)), probs)


def test_unknown_schedule_is_refused_at_construction():
    with pytest.raises(ConfigError, match="instance_noise_schedule"):
        GANBehaviorModel(2, 2, GANConfig(instance_noise_schedule="step"))


def test_noise_dim_zero_is_refused_not_replaced_by_the_action_dimension():
    # `noise_dim or act_dim` used to build a 3-dim noise input for noise_dim=0 while config.json said 0.
    with pytest.raises(ConfigError, match="noise_dim must be at least 1, got 0"):
        GANConfig(noise_dim=0)
    assert GANBehaviorModel(2, 3, GANConfig(hidden=(8,))).generator.noise_dim == 3  # None: the action dimension
    assert GANBehaviorModel(2, 3, GANConfig(hidden=(8,), noise_dim=5)).generator.noise_dim == 5


def test_a_negative_uniform_negative_weight_is_refused():
    # A negative weight rewards D(s, u) -> 1 on uniform actions: the support detector inverted, silently.
    with pytest.raises(ConfigError, match="uniform_negative_weight must be >= 0, got -1.0"):
        GANBehaviorModel(2, 2, GANConfig(uniform_negative_weight=-1.0))
