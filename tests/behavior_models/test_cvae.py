"""CVAE pieces that need no fit: the decoder std derivation, the units conversion, estimators."""

import math

import pytest
import torch

from behavior_models.cvae import CVAEBehaviorModel, CVAEConfig, spot_lambda_to_nats
from behavior_models.errors import ConfigError


@pytest.mark.parametrize("latent_factor", [2, 1, 3])
def test_training_loss_is_a_scaled_negative_elbo(latent_factor):
    # The BCQ/SPOT loss MSE/A + beta*KL/Z (Z = f A latents; SPOT's f = 2) equals (beta/Z) * (-ELBO) + const
    # when the decoder std is sqrt(beta A / 2Z) (sqrt(beta/4) for SPOT). Check model.loss itself against the
    # one-sample negative ELBO written out here: Gaussian decoder log-density and the closed-form KL of
    # N(mu, s^2) from N(0, I).
    torch.manual_seed(0)
    act_dim, beta = 3, 0.5
    model = CVAEBehaviorModel(2, act_dim, CVAEConfig(hidden=(16,), kl_weight=beta, latent_factor=latent_factor))
    latent_dim = latent_factor * act_dim
    assert model.latent_dim == latent_dim
    assert model.decoder_std == pytest.approx(math.sqrt(beta / (2 * latent_factor)))
    obs, act = torch.randn(4, 2), torch.rand(4, act_dim) * 2 - 1
    torch.manual_seed(5)
    loss, _, _ = model.loss(obs, act)
    with torch.no_grad():
        mean, log_std = model.encode(obs, act)
        torch.manual_seed(5)
        z = mean + log_std.exp() * torch.randn_like(mean)  # the draw model.loss made
        sigma = model.decoder_std
        residual = (act - model.decode(obs, z)) / sigma
        log_decoder = (-0.5 * residual ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
        kl = 0.5 * (mean ** 2 + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
        const = act_dim * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        expected = (beta / latent_dim) * (-log_decoder - const + kl).mean()
    torch.testing.assert_close(loss.detach(), expected)
    assert spot_lambda_to_nats(1.0, beta, latent_dim) == pytest.approx(beta / latent_dim)


def test_iw_with_one_sample_is_the_log_weight_whose_mean_is_the_closed_form_kl_elbo():
    """IW with L = 1 is the log weight of its one draw; the mean log weight estimates the same ELBO
    that estimator="elbo" computes with its KL in closed form."""
    torch.manual_seed(0)
    model = CVAEBehaviorModel(2, 2, CVAEConfig(hidden=(16,))).double()
    obs, act = torch.randn(8, 2, dtype=torch.float64), torch.rand(8, 2, dtype=torch.float64) * 2 - 1
    torch.manual_seed(3)
    iw = model.log_prob(obs, act, estimator="iw", num_samples=1)
    torch.manual_seed(3)
    torch.testing.assert_close(iw, model.log_weights(obs, act, 1)[:, 0])
    with torch.no_grad():
        sampled_kl = model.log_weights(obs, act, 20_000).mean(1)
        closed_kl = model.log_prob(obs, act, estimator="elbo", num_samples=20_000)
    torch.testing.assert_close(closed_kl, sampled_kl, rtol=0, atol=0.05)


def test_chunked_decoding_gives_the_same_estimate():
    model = CVAEBehaviorModel(2, 2, CVAEConfig(hidden=(16,)))
    chunked = CVAEBehaviorModel(2, 2, CVAEConfig(hidden=(16,), max_decoder_rows=24))  # 3 draws per chunk
    chunked.load_state_dict(model.state_dict())
    obs, act = torch.randn(8, 2), torch.rand(8, 2) * 2 - 1
    torch.manual_seed(4)
    whole = model.log_weights(obs, act, 10)
    torch.manual_seed(4)
    parts = chunked.log_weights(obs, act, 10)
    assert whole.shape == (8, 10)
    torch.testing.assert_close(parts, whole)


def test_samples_use_the_clipped_latent():
    torch.manual_seed(0)
    model = CVAEBehaviorModel(1, 1, CVAEConfig(hidden=(8,), latent_clip=0.0))
    samples = model.sample(torch.zeros(3, 1), 5)
    # With the latent clipped to 0 every sample is the decoder mean at z = 0.
    expected = model.decode(torch.zeros(1, 1), torch.zeros(1, 2)).item()
    torch.testing.assert_close(samples, torch.full((3, 5, 1), expected))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="estimator"):
        CVAEBehaviorModel(1, 1, CVAEConfig(estimator="vi"))
    with pytest.raises(ConfigError, match="kl_weight"):
        CVAEBehaviorModel(1, 1, CVAEConfig(kl_weight=0.0))
    model = CVAEBehaviorModel(1, 1, CVAEConfig(hidden=(8,)))
    with pytest.raises(ConfigError, match="estimator"):
        model.log_prob(torch.zeros(2, 1), torch.zeros(2, 1), estimator="exact")
    for num_samples in (0, -2):  # 0 used to be read as "the default" (`num_samples or eval_samples`)
        with pytest.raises(ConfigError, match=f"num_samples must be >= 1, got {num_samples}"):
            model.log_prob(torch.zeros(2, 1), torch.zeros(2, 1), num_samples=num_samples)


@pytest.mark.parametrize("field", ["latent_factor", "eval_samples", "max_decoder_rows"])
def test_counts_below_one_are_refused_by_the_config(field):
    # eval_samples=0 used to pass until calibrate(), i.e. after the whole fit, and latent_factor=0
    # until decoder_std divided by zero there.
    with pytest.raises(ConfigError, match=f"CVAEConfig.{field} must be at least 1, got 0"):
        CVAEConfig(**{field: 0})


def test_clamp_bounds_that_torch_would_collapse_are_refused():
    # torch.clamp with min > max returns max everywhere: a constant encoder std, or every latent at -0.5.
    with pytest.raises(ConfigError, match=r"log_std_min \(3.0\) must be <= log_std_max \(-1.0\)"):
        CVAEConfig(log_std_min=3.0, log_std_max=-1.0)
    with pytest.raises(ConfigError, match="latent_clip must be >= 0, got -0.5"):
        CVAEConfig(latent_clip=-0.5)
    CVAEConfig(latent_clip=0.0)  # the decoder at z = 0: allowed


def _linear_gaussian_cvae(monkeypatch, encoder):
    """A CVAE whose decoder mean is c z_1 (no tanh) and whose decoder std is sqrt(beta A / 2Z) = 0.2, so
    p(a) = int N(a; c z_1, 0.2^2) N(z; 0, I) dz = N(a; 0, c^2 + 0.2^2) in closed form; ``encoder``
    maps actions [B, 1] to q's (mean, log-std) [B, 2]."""
    model = CVAEBehaviorModel(1, 1, CVAEConfig(hidden=(4,), kl_weight=0.16, latent_factor=2)).double()
    monkeypatch.setattr(model, "decode", lambda obs, z: 0.5 * z[:, :1])
    monkeypatch.setattr(model, "encode", lambda obs, act: encoder(act))
    return model, 0.5, math.sqrt(0.16 / (2 * 2))


def test_estimators_are_exact_with_the_true_posterior_as_proposal(monkeypatch):
    """With q(z|a) the exact posterior every importance weight equals p(a), so IW (any L) and the
    ELBO both equal log N(a; 0, c^2 + sigma^2): checks log p(a|z), log p(z), log q(z|a), the decoder
    std and IW's -log L against the closed form."""
    def posterior(act):
        precision = 1 + c**2 / sigma**2
        mean = torch.cat([c * act / sigma**2 / precision, torch.zeros_like(act)], dim=1)
        log_std = torch.cat([torch.full_like(act, -0.5 * math.log(precision)), torch.zeros_like(act)], dim=1)
        return mean, log_std

    model, c, sigma = _linear_gaussian_cvae(monkeypatch, posterior)
    act = torch.tensor([[-0.7], [0.0], [0.3], [0.9]], dtype=torch.float64)
    truth = torch.distributions.Normal(0.0, math.sqrt(c**2 + sigma**2)).log_prob(act[:, 0])
    for estimator, num_samples in [("iw", 7), ("iw", 1)]:
        log_p = model.log_prob(torch.zeros(4, 1, dtype=torch.float64), act, estimator=estimator, num_samples=num_samples)
        torch.testing.assert_close(log_p, truth, rtol=0, atol=1e-6)
    # The ELBO is log p(a) - KL(q || posterior) = log p(a) in expectation; its reconstruction term is sampled.
    torch.manual_seed(0)
    elbo = model.log_prob(torch.zeros(4, 1, dtype=torch.float64), act, estimator="elbo", num_samples=20_000)
    torch.testing.assert_close(elbo, truth, rtol=0, atol=0.03)


def test_iw_converges_to_the_density_and_the_elbo_to_its_closed_form_under_the_prior_proposal(monkeypatch):
    """With q = p(z) the ELBO is E_z log N(a; c z_1, sigma^2) = log N(a; 0, sigma^2) - c^2 / (2 sigma^2),
    well below log p(a), while IW with many draws reaches log p(a): a mean of log-weights reported
    as IW (or IW reported without its log-mean-exp) fails one of the two."""
    model, c, sigma = _linear_gaussian_cvae(
        monkeypatch, lambda act: (torch.zeros(act.shape[0], 2, dtype=act.dtype), torch.zeros(act.shape[0], 2, dtype=act.dtype)))
    act = torch.tensor([[-0.5], [0.0], [0.4]], dtype=torch.float64)
    obs = torch.zeros(3, 1, dtype=torch.float64)
    truth = torch.distributions.Normal(0.0, math.sqrt(c**2 + sigma**2)).log_prob(act[:, 0])
    elbo_truth = torch.distributions.Normal(0.0, sigma).log_prob(act[:, 0]) - c**2 / (2 * sigma**2)
    assert (truth - elbo_truth).min() > 1.0  # the two estimators are far apart here
    torch.manual_seed(0)
    iw = model.log_prob(obs, act, estimator="iw", num_samples=20_000)
    elbo = model.log_prob(obs, act, estimator="elbo", num_samples=20_000)
    torch.testing.assert_close(iw, truth, rtol=0, atol=0.05)
    torch.testing.assert_close(elbo, elbo_truth, rtol=0, atol=0.15)


def _np_mlp(sequential, x):
    import numpy as np

    linears = [m for m in sequential if isinstance(m, torch.nn.Linear)]
    for i, layer in enumerate(linears):
        x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        x = np.maximum(x, 0.0) if i < len(linears) - 1 else x
    return x


def test_the_elbo_of_the_real_networks_equals_a_numpy_transcription():
    """log_prob(estimator="elbo", L=1) = log N(a; tanh(dec(s_n, z)), sigma^2 I) - KL(q(z|s_n, a) || N(0, I)),
    z = mu + exp(clamp(log std)) eps, [mu, log std] = enc(s_n, a), s_n = (s - mean) / std the model's own
    normalisation: the wiring (normalised state, input order, clamp, latent size) through the real networks,
    which the closed-form tests replace by stubs. SPOT's default penalty is minus this."""
    import numpy as np

    torch.manual_seed(3)
    config = CVAEConfig(hidden=(16, 16))
    model = CVAEBehaviorModel(3, 2, config).double()
    with torch.no_grad():
        model.obs_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        model.obs_std.copy_(torch.tensor([2.0, 0.5, 1.5]))
        model.encoder[-1].bias[model.latent_dim:].fill_(-6.0)  # some log stds below the clamp (-4)
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(6, 3)) * 2, rng.uniform(-0.9, 0.9, (6, 2))
    torch.manual_seed(11)
    ours = model.log_prob(torch.as_tensor(obs), torch.as_tensor(act), estimator="elbo", num_samples=1).detach().numpy()
    torch.manual_seed(11)
    eps = torch.randn(6, 1, model.latent_dim, dtype=torch.float64).numpy()[:, 0]  # the code's one draw

    s = (obs - np.array([0.5, -1.0, 2.0])) / np.array([2.0, 0.5, 1.5])
    mean, log_std = np.split(_np_mlp(model.encoder, np.concatenate([s, act], 1)), 2, axis=1)
    log_std = np.clip(log_std, config.log_std_min, config.log_std_max)
    assert (log_std == config.log_std_min).any()
    z = mean + np.exp(log_std) * eps
    sigma = math.sqrt(config.kl_weight / (2 * config.latent_factor))
    recon = np.tanh(_np_mlp(model.decoder, np.concatenate([s, z], 1)))
    gauss = lambda x, m, sd: (-0.5 * ((x - m) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)).sum(1)  # noqa: E731
    kl = 0.5 * (mean ** 2 + np.exp(2 * log_std) - 1 - 2 * log_std).sum(1)
    expected = gauss(act, recon, sigma) - kl
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)
