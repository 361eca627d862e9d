"""The contract, checked on every backend of issue 4 (CVAE, flow, GAN) against analytic truth.

Each backend is fitted once per module on the closed-form conditional Gaussian of
``tests.helpers`` (small networks and budgets, so the module stays fast). The Gaussian
backend has its own file; the GAN is exempt from the density-accuracy check because its
log_prob is an unnormalised score (see test_gan.py).
"""

import math

import numpy as np
import pytest
import torch

import behavior_models
from behavior_models.base import InputError
from behavior_models.errors import ConfigError
from behavior_models.data import load_transitions
from behavior_models.zoo import build_config, fit_backend
from tests.helpers import gaussian_log_density, gaussian_mean_std, write_conditional_gaussian_dataset, write_flat_dataset

# Small, fixed test configs.
# * CVAE: kl_weight sets its decoder std sqrt(beta/4) = 0.05, below the data's std
#   (0.074-0.135); the SPOT default 0.5 (std 0.35) cannot represent this data at all.
# * Flow: an affine MAF over R^A (box_bijection="none"): these Gaussians sit 3 std inside the
#   box, and an affine MAF represents them exactly, so the test measures the fit, not the
#   family. With the default tanh bijection the warped target is not affine-Gaussian and a
#   2-layer affine MAF lands at MAE 0.10-0.12 in this budget (measured); the spline variant and
#   the tanh bijection are checked for exact normalisation in test_flow.py and for accuracy by
#   benchmarks/density_accuracy.py. 600 steps: held-out MAE 0.056-0.062 over seeds 0-2 (3000
#   steps, 4x the fit time, gave 0.075), measured with the fit times below.
# Fit times on 2 shared, loaded cores (about half that on an idle machine): CVAE 6-8 s, flow
# 10 s (20 s idle, 40 s loaded at the former 3000 steps), GAN 4-6 s.
CONFIGS = {
    "cvae": dict(steps=3000, hidden=(128, 128), kl_weight=0.01),
    "flow": dict(steps=600, batch_size=1024, lr=2e-3, lr_final_fraction=0.01, transform="affine", hidden=64,
                 num_transforms=2, box_bijection="none"),
    "gan": dict(steps=2000, hidden=(128,), lr=1e-3),
}
# Mean absolute error of log_prob vs the analytic log-density on held-out points (issue 4), and a
# bound on its mean (a constant offset is a density whose mass is wrong by that factor).
# Measured on these fits (AMD EPYC): CVAE (IW, L = 500) MAE 0.066, mean -0.004; flow MAE 0.059, mean -0.002.
MAE_TOLERANCE = {"cvae": 0.12, "flow": 0.1}
BIAS_TOLERANCE = 0.05
# Median over states of sample std / true std; (0.85, 1.15) unless listed. Measured (seeds 0-2,
# 200 states x 50 samples): flow 0.97-0.99, as an exact sampler.
# * CVAE 0.36-0.37: its sampler (BCQ) decodes the mean at z clipped to [-0.5, 0.5], without
#   the decoder's noise, and N(0, 1) clipped to +-0.5 has std 0.28; so the CVAE's samples are
#   narrower than the data by design.
# * GAN 0.93-0.94 with its mode-seeking term (0.08-0.10 without it: see behavior_models/gan.py).
SPREAD_RATIO = {"cvae": (0.25, 0.5)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gauss_data(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("backends_data")))
        write_conditional_gaussian_dataset("test/gauss-backends-v0", episodes=200, steps=100)
        return load_transitions("test/gauss-backends-v0")


@pytest.fixture(scope="module")
def fit_once(gauss_data, tmp_path_factory):
    """name -> (name, model, run dir), fitted once per module through the `bm fit` code path."""
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"fit_{name}") / "run"
            cache[name] = name, fit_backend(name, gauss_data, build_config(name, **CONFIGS[name]), out,
                                            progress=False), out
        return cache[name]

    return get


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def fitted(request, fit_once):
    return fit_once(request.param)


def _seeded(fn, *args, **kwargs):
    """Call ``fn`` with the global torch RNG reset, so stochastic estimators repeat exactly."""
    torch.manual_seed(7)
    return fn(*args, **kwargs)


def _held_out_points(n=2000, seed=123):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 2))
    mean, std = gaussian_mean_std(obs)
    act = mean + std * rng.normal(size=mean.shape)
    return obs, act, gaussian_log_density(obs, act)



def test_grad_log_prob_differentiates_log_prob_with_the_options_given(fit_once, gauss_data):
    # SPOT's density=grad_log_prob on a CVAE passes its estimator and L: the gradient must be that
    # of the one-sample ELBO it asks for, not of the default 100-sample IW estimate.
    _, model, _ = fit_once("cvae")
    obs = torch.as_tensor(gauss_data.observations[:32])
    act = torch.as_tensor(gauss_data.actions[:32])
    options = {"estimator": "elbo", "num_samples": 1}
    with torch.enable_grad():
        leaf = act.clone().requires_grad_(True)
        torch.manual_seed(7)
        (expected,) = torch.autograd.grad(model.log_prob(obs, leaf, **options).sum(), leaf)
    torch.testing.assert_close(_seeded(model.grad_log_prob, obs, act, **options), expected)
    assert not torch.allclose(_seeded(model.grad_log_prob, obs, act), expected, atol=1e-3)
    with pytest.raises(ConfigError, match="the cvae backend refused an option: its log_prob takes no 'solver'"):
        model.grad_log_prob(obs, act, solver="fast")

@pytest.mark.parametrize("name", sorted(MAE_TOLERANCE))  # the GAN is exempt: it has no density (test_gan.py)
def test_log_prob_matches_the_analytic_density(name, fit_once):
    _, model, _ = fit_once(name)
    obs, act, truth = _held_out_points()
    options = {"estimator": "iw", "num_samples": 500} if name == "cvae" else {}
    torch.manual_seed(0)
    ours = model.batched_log_prob(obs, act, batch_size=250, **options).numpy()
    print(f"{name}: log_prob MAE {np.mean(np.abs(ours - truth)):.3f}, mean error {np.mean(ours - truth):+.3f}")
    assert np.mean(np.abs(ours - truth)) <= MAE_TOLERANCE[name]
    assert abs(np.mean(ours - truth)) <= BIAS_TOLERANCE


def test_grad_log_prob_matches_finite_differences(fitted, gauss_data):
    _, model, _ = fitted
    obs = torch.as_tensor(gauss_data.observations[:16]).double()
    act = torch.as_tensor(gauss_data.actions[:16]).double()
    model.double()
    try:
        grad = _seeded(model.grad_log_prob, obs, act)
        # The networks are piecewise linear (ReLU): a central stencil that straddles a kink gives the
        # mean of two slopes, not the derivative (on an AVX2 machine, entries of a fitted CVAE's
        # gradient were off by up to 9e-4 that way). The kink is on one side of the
        # point, so the one-sided difference on the other side is the derivative: each entry must match
        # the central difference or, where it does not, one of the one-sided ones. In double
        # precision, eps = 1e-7 keeps the rounding error near 1e-8 * |log p|.
        eps = 1e-7
        centre = _seeded(model.log_prob, obs, act)
        central_matches = 0
        for dim in range(act.shape[1]):
            shift = torch.zeros_like(act)
            shift[:, dim] = eps
            ahead, behind = _seeded(model.log_prob, obs, act + shift), _seeded(model.log_prob, obs, act - shift)
            differences = ((ahead - behind) / (2 * eps), (ahead - centre) / eps, (centre - behind) / eps)
            close = [torch.isclose(grad[:, dim], numeric, rtol=1e-4, atol=1e-4) for numeric in differences]
            assert (close[0] | close[1] | close[2]).all(), (grad[:, dim], differences)
            central_matches += int(close[0].sum())
        # Kinks are not rare (the CVAE's log-density passes every draw of z through its ReLUs: 3 of
        # these 48 entries needed a one-sided difference), but most entries see none.
        assert central_matches >= 0.75 * act.numel()
    finally:
        model.float()


def test_save_load_round_trip_gives_identical_outputs(fitted, gauss_data):
    _, model, out = fitted
    loaded = behavior_models.load(out)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert float(loaded.support_threshold) == float(model.support_threshold)
    obs = torch.as_tensor(gauss_data.observations[:64])
    act = torch.as_tensor(gauss_data.actions[:64])
    torch.testing.assert_close(_seeded(loaded.log_prob, obs, act), _seeded(model.log_prob, obs, act), rtol=0, atol=0)
    torch.testing.assert_close(_seeded(loaded.sample, obs, 5), _seeded(model.sample, obs, 5), rtol=0, atol=0)
    # Seeded like the two checks above: the CVAE's log_prob is a random estimate, so two unseeded
    # masks can differ at points near the threshold (seen with a noisier estimator).
    torch.testing.assert_close(_seeded(loaded.support_mask, obs, act), _seeded(model.support_mask, obs, act))


def test_support_mask_separates_data_from_far_actions(fitted, gauss_data):
    _, model, _ = fitted
    _, held_out = gauss_data.split_episodes(model.config.holdout_fraction, seed=model.config.seed)
    obs = torch.as_tensor(held_out.observations[:1000])
    act = torch.as_tensor(held_out.actions[:1000])
    torch.manual_seed(0)
    assert model.support_mask(obs, act).float().mean() >= 0.95
    # In-box actions 0.6 >= 4.4 sigma (sigma <= 0.135) from the conditional mean on every axis
    # (|mean| <= 0.6, so mean -+ 0.6 stays inside the box).
    mean, _ = gaussian_mean_std(held_out.observations[:1000].astype(np.float64))
    far = torch.as_tensor(np.where(mean > 0, mean - 0.6, mean + 0.6), dtype=torch.float32)
    assert np.abs(far.numpy() - mean).min() >= 4 * 0.135 and far.abs().max() <= 1
    assert (~model.support_mask(obs, far)).float().mean() >= 0.95


def test_samples_are_in_the_box_and_near_the_data(fitted):
    name, model, _ = fitted
    obs = np.random.default_rng(5).uniform(-1, 1, (200, 2))
    with torch.no_grad():
        samples = _seeded(model.sample, torch.tensor(obs, dtype=torch.float32), 50)
    assert samples.shape == (200, 50, 3) and samples.abs().max() <= 1
    mean, std = gaussian_mean_std(obs)
    # Per-state sample mean within 2.5 true stds of the truth for 95% of states.
    error = np.abs(samples.mean(1).numpy() - mean) / std
    assert np.mean(error < 2.5) >= 0.95
    # On average within 0.3 true stds: a correct sampler's 50-sample mean is off by
    # sqrt(2 / pi) / sqrt(50) = 0.11 std by chance alone. Measured (seeds 0-2): CVAE 0.05,
    # flow 0.11-0.12, GAN 0.08-0.15; a GAN shifted by +0.15 (about 1.5 std): 1.5.
    assert error.mean() <= 0.3
    # The spread: the median over states and axes of sample std / true std.
    ratio = np.median(samples.std(1).numpy() / std)
    low, high = SPREAD_RATIO.get(name, (0.85, 1.15))
    assert low <= ratio <= high, f"{name}: median sample std / true std {ratio:.3f} not in [{low}, {high}]"


def test_wrong_inputs_give_clear_errors(fitted):
    name, model, _ = fitted
    obs = torch.zeros(4, 2)
    with pytest.raises(InputError, match=r"shape \[B, 3\]"):
        model.log_prob(obs, torch.zeros(4, 2))
    with pytest.raises(InputError, match=r"shape \[B, 2\]"):
        model.sample(torch.zeros(4, 5), 2)
    with pytest.raises(InputError, match="floating-point"):
        model.log_prob(obs, torch.zeros(4, 3, dtype=torch.long))
    # A float64 input to a float32 model: used to be torch's "mat1 and mat2 must have the same dtype"
    # from inside the network (or, for the Gaussian's action, a silently float64 result).
    with pytest.raises(InputError, match=r"act is torch.float64 but the model's weights are torch.float32"):
        model.log_prob(obs, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(InputError, match=r"obs is torch.float64"):
        model.sample(obs.double(), 2)
    with pytest.raises(InputError, match="torch.Tensor"):
        model.support_mask(np.zeros((4, 2)), torch.zeros(4, 3))
    with pytest.raises(InputError, match="same batch size"):
        model.grad_log_prob(obs, torch.zeros(5, 3))
    with pytest.raises(InputError, match="is on meta"):
        model.log_prob(obs.to("meta"), torch.zeros(4, 3, device="meta"))
    # An option of another backend (the score model's sampler) is named, with what this one takes.
    assert model.accepted_options("sample") == ()
    assert model.accepted_options("log_prob") == {"cvae": ("estimator", "num_samples")}.get(name, ())
    with pytest.raises(ConfigError, match=f"the {name} backend refused an option: its sample takes no 'sampler'"):
        model.sample(obs, 2, sampler="pc")
    with pytest.raises(ConfigError, match="its log_prob takes no 'solver'"):
        model.support_mask(obs, torch.zeros(4, 3), threshold=0.0, solver="dopri5")


def test_actions_exactly_on_the_boundary_get_finite_scores(fitted):
    name, model, _ = fitted
    obs = torch.zeros(6, 2)
    act = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]] * 2)
    log_p = _seeded(model.log_prob, obs, act)
    assert torch.isfinite(log_p).all()
    # (The test flow is over R^A: +-1 is scored as it is. The default tanh flow: next test.)


def test_the_tanh_flow_scores_the_boundary_as_its_clipped_neighbour():
    model = behavior_models.backend_class("flow")(2, 3, build_config("flow", hidden=8, num_transforms=1))
    obs = torch.zeros(2, 2)
    act = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]])
    log_p = model.log_prob(obs, act)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p, model.log_prob(obs, act * (1 - model.config.boundary_delta)))


# ----------------------------------------------------------------------------- CVAE estimators
def test_iw_estimate_is_above_the_elbo_and_tightens_with_more_samples(fit_once):
    _, model, _ = fit_once("cvae")
    obs, act, truth = _held_out_points(n=500, seed=9)
    means = {}
    for estimator, num_samples in [("elbo", 500), ("iw", 1), ("iw", 5), ("iw", 50), ("iw", 500)]:
        torch.manual_seed(num_samples)  # independent draws for every estimate
        log_p = model.batched_log_prob(obs, act, batch_size=250, estimator=estimator, num_samples=num_samples)
        means[estimator, num_samples] = float(log_p.mean())
    assert means["iw", 500] > means["elbo", 500]
    # E[IW_L] grows with L; from L = 50 on the steps are below the Monte-Carlo noise of 500 points.
    assert means["iw", 1] < means["iw", 5] < means["iw", 50] <= means["iw", 500] + 0.01
    # ... and converges towards the truth from below: E[IW_L] <= log p_model, and on points drawn
    # from the truth E[log p_model] <= E[log p_true] (Gibbs), up to the noise of 500 points.
    gaps = [float(np.mean(truth)) - means["iw", n] for n in (1, 5, 50, 500)]
    assert gaps[0] > gaps[-1] and abs(gaps[-1]) < 0.3
    assert all(gap > -0.05 for gap in gaps), gaps


def test_gan_declares_its_log_prob_unnormalised(fit_once):
    _, model, out = fit_once("gan")
    assert model.log_prob_kind == "unnormalized" and model.capabilities()["log_prob_kind"] == "unnormalized"
    assert behavior_models.load(out).metadata()["capabilities"]["log_prob_kind"] == "unnormalized"
    # log D/(1-D): exactly the discriminator's logit.
    obs, act = torch.zeros(4, 2), torch.zeros(4, 3)
    d = model.discriminator(model.normalize(obs), act)
    torch.testing.assert_close(model.log_prob(obs, act), torch.log(d / (1 - d)), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- boundary mass
# A 1-D dataset whose actions sit exactly on +1 a sixth of the time (a clipped Gaussian):
# every backend must fit it without non-finite losses and keep the boundary actions in support.
BOUNDARY_CONFIGS = {
    "cvae": dict(steps=600, hidden=(64, 64), kl_weight=0.05),
    "flow": dict(steps=600, hidden=32, num_transforms=2),
    "gan": dict(steps=600, hidden=(64,), lr=1e-3),
}


@pytest.fixture(scope="module")
def boundary_data(tmp_path_factory):
    def clip_actions(episodes):
        rng = np.random.default_rng(1)
        for episode in episodes:
            s = episode["observations"][:-1, :1]
            episode["actions"] = np.clip(0.75 + 0.1 * s + 0.25 * rng.normal(size=s.shape), -1, 1).astype(np.float32)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("boundary_data")))
        write_flat_dataset("test/boundary-v0", episode_lengths=[100] * 30, obs_dim=1, act_dim=1, mutate=clip_actions)
        return load_transitions("test/boundary-v0")


@pytest.mark.parametrize("name", sorted(BOUNDARY_CONFIGS))
def test_boundary_mass_is_fitted_and_kept_in_support(name, boundary_data):
    at_one = boundary_data.actions[:, 0] == 1.0
    assert 0.1 < at_one.mean() < 0.3  # P(N(0.75 + 0.1 s, 0.25^2) >= 1) ~ 0.16
    model = fit_backend(name, boundary_data, build_config(name, **BOUNDARY_CONFIGS[name]), None, progress=False)
    obs = torch.as_tensor(boundary_data.observations[at_one][:500])
    ones = torch.ones(len(obs), 1)
    torch.manual_seed(0)
    log_p = model.log_prob(obs, ones)
    assert torch.isfinite(log_p).all() and math.isfinite(float(model.support_threshold))
    assert model.support_mask(obs, ones).float().mean() >= 0.95
