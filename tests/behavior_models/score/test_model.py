"""The score backend through the contract: solvers, samplers, boundary, persistence, ensembles.

A small model fitted for a few hundred steps is enough for the mechanics (agreement between
solvers, log-probs of returned samples); the accuracy test against the analytic density
needs a real fit and is marked slow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import behavior_models
from behavior_models.data import load_transitions
from behavior_models.errors import ConfigError
from behavior_models.score.model import ScoreBehaviorModel, ScoreConfig
from tests.helpers import (GAUSSIAN_B, GAUSSIAN_SIGMA0, GAUSSIAN_W, gaussian_log_density, gaussian_mean_std,
                           write_conditional_gaussian_dataset)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("score_data")))
        write_conditional_gaussian_dataset("test/score-gauss-v0", episodes=30, steps=50)
        return load_transitions("test/score-gauss-v0")


@pytest.fixture(scope="module")
def small(data, tmp_path_factory):
    # A slow time embedding (20 t, not 1000 t) keeps this rough model's ODEs cheap to solve.
    config = ScoreConfig(steps=400, width=64, blocks=2, lr=2e-3, batch_size=256, ema_decay=0.9,
                         holdout_fraction=0.0, log_every=100, time_embedding_scale=20.0)
    out = tmp_path_factory.mktemp("score_model") / "model"
    ScoreBehaviorModel.fit(data, config, out_dir=out, progress=False)
    return behavior_models.load(out)


def _inputs(data, count, start=0):
    return (torch.as_tensor(data.observations[start:start + count]), torch.as_tensor(data.actions[start:start + count]))


def test_capabilities():
    assert ScoreBehaviorModel.capabilities() == {
        "log_prob_kind": "exact", "differentiable_log_prob": False, "native_grad_log_prob": True,
        "grad_log_prob": True, "reparameterized_sample": False}


def test_solvers_agree_on_a_trained_model(small, data):
    obs, act = _inputs(data, 4)
    # At the default rtol = atol = 1e-5 each solver is within ~5e-3 nats of a 1e-9 solve (the
    # log-det component is large, so its rtol dominates); agreement to 1e-3 needs 1e-7, which
    # the slow test checks on a well-trained model (this rough one needs thousands of steps).
    dopri5 = small.log_prob(obs, act, solver="dopri5")
    scipy = small.log_prob(obs, act, solver="scipy-rk45")
    assert (dopri5 - scipy).abs().max() <= 0.02
    # Hutchinson: unbiased, so the mean over many probes approaches the exact value.
    probes = 32
    loose = {"rtol": 1e-4, "atol": 1e-4}
    exact = small.log_prob(obs, act, **loose)
    hutchinson = small.log_prob(obs, act, divergence="hutchinson", probes=probes,
                                generator=torch.Generator().manual_seed(0), **loose)
    single = torch.stack([small.log_prob(obs, act, divergence="hutchinson", generator=torch.Generator().manual_seed(s),
                                         **loose) for s in range(2)])
    assert (single[0] != single[1]).any()  # different probes, different estimates
    spread = (single - exact).abs().max()
    assert (hutchinson - exact).abs().max() <= max(4 * float(spread) / math.sqrt(probes), 2e-3)


def test_fast_likelihood_is_close_to_dopri5(small, data):
    obs, act = _inputs(data, 8)
    exact = small.log_prob(obs, act)
    errors = {steps: float((small.log_prob(obs, act, solver="fast", steps=steps) - exact).abs().mean())
              for steps in (10, 40)}
    assert errors[40] <= errors[10] and errors[40] <= 0.05


@pytest.mark.parametrize("sampler", ["ode", "fast"])
def test_sample_and_log_prob_scores_the_returned_actions(small, data, sampler):
    obs, _ = _inputs(data, 3)
    actions, log_probs = small.sample_and_log_prob(obs, 4, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert actions.shape == (3, 4, 3) and log_probs.shape == (3, 4) and actions.abs().max() <= 1
    solver = "fast" if sampler == "fast" else "dopri5"
    rescored = small.log_prob(obs.repeat_interleave(4, 0), actions.reshape(-1, 3), solver=solver).reshape(3, 4)
    # The sampling path's log-prob (t: 1 -> eps) against a fresh solve (eps -> 1) of the returned
    # action: dopri5 at rtol = atol = 1e-5 is good to a few 1e-3 nats each way; the 20-step
    # DPM-Solver, run both ways, to a few 1e-2 on average on this rough 400-step model.
    if sampler == "ode":
        assert (rescored - log_probs).abs().max() <= 0.02
    else:
        assert (rescored - log_probs).abs().mean() <= 0.1


def test_pc_samples_are_shaped_clipped_and_reproducible(small, data):
    obs, _ = _inputs(data, 3)
    first = small.sample(obs, 5, sampler="pc", steps=20, generator=torch.Generator().manual_seed(0))
    again = small.sample(obs, 5, sampler="pc", steps=20, generator=torch.Generator().manual_seed(0))
    assert first.shape == (3, 5, 3) and first.abs().max() <= 1
    torch.testing.assert_close(first, again)
    actions, log_probs = small.sample_and_log_prob(obs, 2, sampler="pc", steps=20, solver="fast")
    assert actions.shape == (3, 2, 3) and log_probs.shape == (3, 2) and torch.isfinite(log_probs).all()


def test_boundary_actions_are_scored_like_their_clipped_neighbours(small, data):
    obs, act = _inputs(data, 4)
    on_edge = act.clone()
    on_edge[:, 0] = 1.0
    inside = on_edge.clone()
    inside[:, 0] = 1.0 - small.config.boundary_delta
    torch.testing.assert_close(small.log_prob(obs, on_edge, solver="fast"), small.log_prob(obs, inside, solver="fast"))


def test_grad_log_prob_points_uphill(small, data):
    obs, act = _inputs(data, 64)
    act = act + 0.05 * torch.randn(act.shape, generator=torch.Generator().manual_seed(0))  # off the data
    grad = small.grad_log_prob(obs, act)
    assert grad.shape == act.shape and torch.isfinite(grad).all()
    step = 0.02 * grad / grad.norm(dim=1, keepdim=True)  # std of the data: 0.09-0.14
    # The 40-step fast solver: both sides share its (small, smooth) discretisation error.
    gain = small.log_prob(obs, act + step, solver="fast", steps=40) - small.log_prob(obs, act, solver="fast", steps=40)
    assert (gain > 0).float().mean() >= 0.9
    # The native score takes no log_prob options: one given is refused, not silently ignored.
    with pytest.raises(ConfigError, match="grad_log_prob is native and takes no options; got 'solver'"):
        small.grad_log_prob(obs, act, solver="fast")


def test_saved_model_reloads_identically(small, data, tmp_path):
    obs, act = _inputs(data, 4)
    small.save(tmp_path / "copy")
    again = behavior_models.load(tmp_path / "copy")
    assert isinstance(again, ScoreBehaviorModel) and again.config == small.config
    torch.testing.assert_close(again.log_prob(obs, act, solver="fast"), small.log_prob(obs, act, solver="fast"))


def test_ensemble_is_the_uniform_mixture_of_its_members(data):
    config = ScoreConfig(steps=30, width=32, blocks=1, batch_size=64, ensemble=2, holdout_fraction=0.0,
                         time_embedding_scale=20.0)
    model = ScoreBehaviorModel.fit(data, config, progress=False)
    obs, act = _inputs(data, 5)
    both = model.log_prob(obs, act, solver="fast")
    members = []
    for j in range(2):
        single = ScoreBehaviorModel(data.obs_dim, data.act_dim, ScoreConfig(width=32, blocks=1, time_embedding_scale=20.0))
        single.networks.members[0].load_state_dict(model.networks.members[j].state_dict())
        single.obs_mean.copy_(model.obs_mean), single.obs_std.copy_(model.obs_std)
        members.append(single.log_prob(obs, act, solver="fast"))
    torch.testing.assert_close(both, torch.logsumexp(torch.stack(members), 0) - math.log(2))
    assert model.sample(obs, 4, sampler="fast").shape == (5, 4, 3)


def test_every_ensemble_member_trains_when_the_batch_does_not_split_evenly(data):
    """16 rows among 5 members: torch.chunk makes 4 pieces of 4, which would leave a member untrained."""
    model = ScoreBehaviorModel(data.obs_dim, data.act_dim, ScoreConfig(width=8, blocks=1, ensemble=5, batch_size=16))
    before = [torch.nn.utils.parameters_to_vector(m.parameters()).clone() for m in model.networks.members]
    obs, act = _inputs(data, 16)
    model.training_step(obs, act, 0, model.make_optimizers())
    for j, (member, initial) in enumerate(zip(model.networks.members, before)):
        assert not torch.equal(torch.nn.utils.parameters_to_vector(member.parameters()), initial), j


class ExactNoise(torch.nn.Module):
    """The noise predictor a perfect fit of tests.helpers' conditional Gaussian would be:
    eps*(x, s, t) = -sigma_t grad_x log p_t(x|s), with p_t = N(alpha_t mu(s), alpha_t^2 std(s)^2 + sigma_t^2)."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def forward(self, x, obs, t):  # tests.helpers.gaussian_mean_std in torch (the divergence differentiates it)
        obs = obs.to(x.dtype)
        mean = obs @ torch.as_tensor(GAUSSIAN_W, dtype=x.dtype).T + torch.as_tensor(GAUSSIAN_B, dtype=x.dtype)
        std = GAUSSIAN_SIGMA0 * torch.exp(0.3 * torch.tanh(obs[:, :1]))
        alpha, sigma = self.sde.alpha(t).to(x.dtype), self.sde.sigma(t).to(x.dtype)
        return sigma * (x - alpha * mean) / (alpha ** 2 * std ** 2 + sigma ** 2)


def _analytic_score_at_grad_t(model, mean, std, act):
    """The score at t = grad_t of N(mean, std^2) diffused by the VP-SDE: N(alpha mean, alpha^2 std^2 + sigma^2)."""
    t = torch.tensor(model.config.grad_t, dtype=torch.float64)
    alpha, sigma = float(model.sde.alpha(t)), float(model.sde.sigma(t))
    return -(act - alpha * mean) / (alpha**2 * std**2 + sigma**2)


def test_likelihood_and_sampler_recover_a_known_density_given_its_exact_score():
    """The SDE, the probability-flow likelihood and the sampler checked against the analytic
    density in seconds: a fitted network would add its own error (the slow test below measures
    that); with the exact noise predictor, what is left is the solvers' own."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1))  # unfitted: identity state normalisation
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde)])
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (16, 2))
    mean, std = gaussian_mean_std(obs)
    act = mean + std * rng.normal(size=mean.shape)
    log_p = model.log_prob(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(act, dtype=torch.float32))
    np.testing.assert_allclose(log_p.double().numpy(), gaussian_log_density(obs, act), atol=0.02)
    for sampler in ("fast", "pc"):  # pc: the default sampler, 500 predictor-corrector steps
        samples = model.sample(torch.as_tensor(obs[:4], dtype=torch.float32), 400, sampler=sampler,
                               generator=torch.Generator().manual_seed(0)).double().numpy()
        assert np.abs(samples.mean(1) - mean[:4]).max() <= 4 * std.max() / math.sqrt(400) + 0.01, sampler
        assert np.abs(samples.std(1) / std[:4] - 1).max() <= 0.15, sampler


def test_grad_log_prob_is_the_analytic_score_at_grad_t_given_the_exact_noise():
    """grad_log_prob = -eps(a, s, grad_t) / sigma(grad_t): with the exact noise predictor it must be
    the score of the diffused Gaussian N(alpha mu, alpha^2 std^2 + sigma^2) at t = grad_t, and an
    action past the boundary band is scored at its clamped neighbour."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1))
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde)])
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, (32, 2))
    mean, std = gaussian_mean_std(obs)
    act = np.clip(mean + 2 * std * rng.normal(size=mean.shape), -0.95, 0.95)
    truth = _analytic_score_at_grad_t(model, mean, std, act)
    obs_t = torch.as_tensor(obs, dtype=torch.float32)
    grad = model.grad_log_prob(obs_t, torch.as_tensor(act, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(grad, truth, rtol=1e-4, atol=1e-3)
    edge = act.copy()
    edge[:, 0] = 1.0
    inside = edge.copy()
    inside[:, 0] = 1.0 - model.config.boundary_delta
    torch.testing.assert_close(model.grad_log_prob(obs_t, torch.as_tensor(edge, dtype=torch.float32)),
                               model.grad_log_prob(obs_t, torch.as_tensor(inside, dtype=torch.float32)))


def test_bad_options_are_refused(small, data):
    obs, act = _inputs(data, 2)
    with pytest.raises(ConfigError, match="solver"):
        small.log_prob(obs, act, solver="euler")
    with pytest.raises(ConfigError, match="hutchinson"):
        small.log_prob(obs, act, probes=4)
    with pytest.raises(ConfigError, match="sampler"):
        small.sample(obs, 2, sampler="ddim")
    assert small.accepted_options("sample") == ("sampler", "steps", "generator")
    with pytest.raises(ConfigError, match="its sample takes no 'solver' \\(its options: sampler, steps, generator\\)"):
        small.sample(obs, 2, solver="dopri5")  # a log_prob option given to sample
    with pytest.raises(ConfigError, match="its log_prob takes no 'sampler_steps'"):
        small.sample_and_log_prob(obs, 2, sampler="fast", sampler_steps=3)  # the fast path used to ignore it
    with pytest.raises(ConfigError, match=r"sampler='ode' gets the log-probs from the sampling solve .*\['rtol'\]"):
        small.sample_and_log_prob(obs, 2, sampler="ode", rtol=0.3)  # valid for log_prob, unused by the joint solve


@pytest.mark.parametrize("call, options, message", [
    ("sample", {"sampler": "fast", "steps": 0}, "steps must be at least 1, got 0"),
    ("sample", {"sampler": "pc", "steps": 0}, "steps must be at least 1, got 0"),
    ("sample", {"sampler": "fast", "steps": -3}, "steps must be at least 1, got -3"),
    ("log_prob", {"solver": "fast", "steps": 0}, "steps must be at least 1, got 0"),
    ("log_prob", {"rtol": 0.0}, "need rtol > 0 and atol > 0"),
    ("log_prob", {"atol": 0.0}, "need rtol > 0 and atol > 0"),
])
def test_an_explicit_zero_option_is_refused_not_replaced_by_the_default(small, data, call, options, message):
    # `steps or cfg.fast_steps` used to turn steps=0 into the default silently (and rtol=0, atol=0 likewise).
    obs, act = _inputs(data, 2)
    with pytest.raises(ConfigError, match=message):
        small.sample(obs, 2, **options) if call == "sample" else small.log_prob(obs, act, **options)
    with pytest.raises(ConfigError, match="langevin_step"):
        ScoreConfig(langevin_step="mean")


@pytest.mark.parametrize("field, value", [("pc_steps", 0), ("fast_steps", 0), ("fast_order", 0), ("fast_order", 4),
                                          ("width", 0), ("blocks", -1), ("pc_corrector_steps", -1)])
def test_counts_the_samplers_cannot_use_are_refused_by_the_config(field, value):
    # They used to pass, then fail at the first draw (pc_steps=0: ZeroDivisionError; fast_steps=0:
    # IndexError) or silently run another method (fast_order=4 ran the third-order solver).
    with pytest.raises(ConfigError, match=f"{field}"):
        ScoreConfig(**{field: value})


@pytest.mark.slow
def test_trained_log_prob_matches_the_analytic_density(tmp_path_factory):
    """A real fit (about 7 minutes on 2 shared cores) gets log_prob within 0.1 nats MAE."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("score_acc")))
        write_conditional_gaussian_dataset("test/score-acc-v0", episodes=200, steps=100)
        train = load_transitions("test/score-acc-v0")
    # grad_log_prob at the default grad_t (3e-3; at 1e-3 this fit's gradient was 1.69x too
    # large: see ScoreConfig.grad_t).
    config = ScoreConfig(steps=6000, width=128, lr=1e-3, lr_final_fraction=0.01, holdout_fraction=0.0)
    model = ScoreBehaviorModel.fit(train, config, progress=False)
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, (500, 2))
    mean, std = gaussian_mean_std(obs)
    act = mean + std * rng.normal(size=mean.shape)
    obs_t, act_t = torch.tensor(obs, dtype=torch.float32), torch.tensor(act, dtype=torch.float32)
    # grad_log_prob, direction and size, against the analytic score at t = grad_t: the data
    # Gaussian diffused by the VP-SDE, N(alpha mu, alpha^2 sigma^2 + sigma_t^2) (sigma_t = 0.02:
    # 2-7% below the score -(a - mu) / sigma^2 of the data itself). Only at points at least
    # 0.5 std from the mean (where the truth is not ~0) and off the +-1 clamp.
    t = torch.tensor(config.grad_t, dtype=torch.float64)
    alpha, sigma_t = float(model.sde.alpha(t)), float(model.sde.sigma(t))
    truth = -(act - alpha * mean) / (alpha**2 * std**2 + sigma_t**2)
    grad = model.grad_log_prob(obs_t, act_t).double().numpy()
    keep = (np.abs(act).max(1) <= 0.95) & (np.linalg.norm((act - mean) / std, axis=1) >= 0.5)
    assert keep.sum() >= 400
    grad, truth = grad[keep], truth[keep]
    cosine = np.median((grad * truth).sum(1) / np.linalg.norm(grad, axis=1) / np.linalg.norm(truth, axis=1))
    norm_ratio = np.median(np.linalg.norm(grad, axis=1) / np.linalg.norm(truth, axis=1))
    print(f"trained score model: grad_log_prob median cosine {cosine:.4f}, median norm ratio {norm_ratio:.3f}")
    assert cosine >= 0.95 and 0.8 <= norm_ratio <= 1.25  # measured: 0.9988 and 1.008
    errors = model.log_prob(obs_t, act_t).numpy() - gaussian_log_density(obs, act)
    print(f"trained score model: log_prob MAE {np.abs(errors).mean():.4f} nats, bias {errors.mean():+.4f}")
    assert np.abs(errors).mean() <= 0.1
    # The two solvers agree within 1e-3 nats at rtol = atol = 1e-7.
    tight = {"rtol": 1e-7, "atol": 1e-7}
    dopri5 = model.log_prob(obs_t[:4], act_t[:4], solver="dopri5", **tight)
    scipy = model.log_prob(obs_t[:4], act_t[:4], solver="scipy-rk45", **tight)
    assert (dopri5 - scipy).abs().max() <= 1e-3
    # Its samples follow the conditional mean and std (PC sampler, 500 steps, 8 states x 200).
    samples = model.sample(obs_t[:8], 200, sampler="pc").numpy()
    assert np.abs(samples.mean(1) - mean[:8]).max() <= 0.03
    assert np.abs(samples.std(1) / std[:8] - 1).max() <= 0.25


@pytest.mark.parametrize("train_t_min", [1e-3, 0.3])  # 0.3: a loss drawing t below train_t_min shows
def test_dsm_loss_matches_its_closed_form_expectation_for_a_linear_predictor(train_t_min):
    """Seed 002's DSM loss E_t E_z ||eps(alpha_t a + sigma_t z) - z||^2, t ~ U(train_t_min, 1), written
    out in closed form for the linear predictor eps(x) = c x: per dimension the integrand is
    c^2 alpha_t^2 a^2 + (c sigma_t - 1)^2, with alpha_t from the VP-SDE's closed form computed here in
    numpy. The fits only check that a model agrees with itself, so a wrong target sign (eps -> -z, a
    model whose score points downhill) passed them; this fails it, and a wrong time range or weighting."""
    from scipy import integrate

    config = ScoreConfig(width=8, blocks=1, train_t_min=train_t_min, beta_min=0.1, beta_max=20.0)
    model = ScoreBehaviorModel(1, 2, config)
    a, c, rows = np.array([0.6, -0.3]), 0.5, 200_000

    def integrand(t):
        alpha = math.exp(-0.25 * t**2 * (config.beta_max - config.beta_min) - 0.5 * t * config.beta_min)
        sigma = math.sqrt(1.0 - alpha**2)
        return float(np.sum(c**2 * alpha**2 * a**2 + (c * sigma - 1.0) ** 2))

    expected = integrate.quad(integrand, config.train_t_min, 1.0)[0] / (1.0 - config.train_t_min)
    torch.manual_seed(0)
    act = torch.as_tensor(a, dtype=torch.float32).expand(rows, 2)
    per_row = [model.dsm_loss(lambda x_t, obs, t: c * x_t, torch.zeros(1000, 1), act[i:i + 1000]).item()
               for i in range(0, rows, 1000)]
    stderr = np.std(per_row) / math.sqrt(len(per_row))
    assert abs(np.mean(per_row) - expected) <= 5 * stderr, (np.mean(per_row), expected, stderr)


def test_sample_and_log_prob_rescores_samples_in_the_boundary_band(monkeypatch):
    """A sample in (1 - delta, 1] is returned as it is, but log_prob scores it at its clamped
    neighbour 1 - delta, so its path log-prob must be replaced by log_prob's (the contract:
    the log-probs of the returned actions); a sample well inside keeps its path value."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1))
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde)])
    delta = model.config.boundary_delta
    x = torch.tensor([[1.0 - delta / 2, 0.1, 0.0], [0.1, 0.2, -0.1], [-1.0 - delta, 0.0, 0.1]], dtype=torch.float64)
    path = torch.full((3,), 123.0, dtype=torch.float64)  # a stand-in for the sampling solve's log-probs
    monkeypatch.setattr(model, "_run_sampler", lambda *args, **kwargs: (x.float(), path.float().clone()))
    obs = torch.zeros(3, 2)
    actions, log_probs = model.sample_and_log_prob(obs, 1, sampler="fast")
    rescored = model.log_prob(obs, actions.reshape(3, 3), solver="fast")
    assert log_probs[1, 0] == 123.0
    torch.testing.assert_close(log_probs[[0, 2], 0], rescored[[0, 2]])


def test_grad_log_prob_and_log_prob_see_the_normalised_state():
    """The model is fed raw states and normalises them with its stored statistics before the
    network: with the exact noise predictor of the normalised state, grad_log_prob must be the
    analytic score there (the other exact-noise tests run with identity statistics, so a hook
    given the raw state passed them)."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1))
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde)])
    model.obs_mean.copy_(torch.tensor([0.4, -0.3]))
    model.obs_std.copy_(torch.tensor([2.0, 0.5]))
    rng = np.random.default_rng(2)
    normalised = rng.uniform(-1, 1, (32, 2))
    raw = normalised * np.array([2.0, 0.5]) + np.array([0.4, -0.3])
    mean, std = gaussian_mean_std(normalised)
    act = np.clip(mean + 2 * std * rng.normal(size=mean.shape), -0.95, 0.95)
    truth = _analytic_score_at_grad_t(model, mean, std, act)
    raw_t, act_t = torch.as_tensor(raw, dtype=torch.float32), torch.as_tensor(act, dtype=torch.float32)
    np.testing.assert_allclose(model.grad_log_prob(raw_t, act_t).double().numpy(), truth, rtol=1e-4, atol=1e-3)
    log_p = model.log_prob(raw_t[:8], act_t[:8])
    np.testing.assert_allclose(log_p.double().numpy(), gaussian_log_density(normalised[:8], act[:8]), atol=0.02)


class _ScaledNoise(ExactNoise):
    def forward(self, x, obs, t):
        return 0.5 * super().forward(x, obs, t)


def test_an_ensembles_grad_log_prob_is_the_mean_of_its_members_scores():
    """grad_log_prob of an ensemble is the average of the members' scores (model.py docstring): members
    whose scores are the analytic score s and s / 2 give 3 s / 4."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1, ensemble=2))
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde), _ScaledNoise(model.sde)])
    rng = np.random.default_rng(3)
    obs = rng.uniform(-1, 1, (16, 2))
    mean, std = gaussian_mean_std(obs)
    act = np.clip(mean + 2 * std * rng.normal(size=mean.shape), -0.95, 0.95)
    truth = _analytic_score_at_grad_t(model, mean, std, act)
    grad = model.grad_log_prob(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(act, dtype=torch.float32))
    np.testing.assert_allclose(grad.double().numpy(), 0.75 * truth, rtol=1e-4, atol=1e-3)



def test_an_ensemble_averages_each_members_probes_before_the_mixture():
    """With Hutchinson probes, log_prob of an ensemble is log mean_j exp(mean over probes of member j's
    estimate): averaging each member's (unbiased) probe estimates first, then the convex logsumexp.
    Each member is scored alone with the same probes (same generator seed) for the expected value."""
    # Two randomly initialised members: their Jacobians are not diagonal, so single probes err (a
    # Gaussian's exact predictor has a diagonal one, which Rademacher probes trace exactly).
    torch.manual_seed(4)
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1, ensemble=2))
    rng = np.random.default_rng(4)
    obs = torch.as_tensor(rng.uniform(-1, 1, (6, 2)), dtype=torch.float32)
    act = torch.as_tensor(rng.uniform(-0.5, 0.5, (6, 3)), dtype=torch.float32)
    options = {"divergence": "hutchinson", "probes": 8, "rtol": 1e-4, "atol": 1e-4}
    members = []
    for network in model.networks:
        single = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1))
        single.networks = torch.nn.ModuleList([network])
        members.append(single.log_prob(obs, act, generator=torch.Generator().manual_seed(5), **options).double())
    expected = torch.logsumexp(torch.stack(members), 0) - math.log(2)
    ensemble = model.log_prob(obs, act, generator=torch.Generator().manual_seed(5), **options)
    torch.testing.assert_close(ensemble.double(), expected, rtol=0, atol=1e-5)


def test_each_rows_probe_average_uses_its_own_states_probes():
    """With fixed-step solves (the fast solver) a row's estimate does not depend on the other rows, so
    scoring [x0, x1] and [x0, x0] with the same probes must give row 0 the same value; averaging probes
    grouped across rows would mix x1's estimates into it."""
    torch.manual_seed(4)
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1, ensemble=2))
    obs = torch.tensor([[0.3, -0.2], [-0.8, 0.6]])
    act = torch.tensor([[0.1, -0.4, 0.2], [0.7, 0.5, -0.6]])
    options = {"solver": "fast", "divergence": "hutchinson", "probes": 4}
    mixed = model.log_prob(obs, act, generator=torch.Generator().manual_seed(5), **options)
    same = model.log_prob(obs[[0, 0]], act[[0, 0]], generator=torch.Generator().manual_seed(5), **options)
    torch.testing.assert_close(mixed[0], same[0], rtol=0, atol=1e-6)
    assert (mixed[1] - same[1]).abs() > 1e-3  # the second row is another state's


class _ShiftedNoise(ExactNoise):
    """The exact noise predictor of the same Gaussian with its first action mean moved by +0.5."""

    def forward(self, x, obs, t):
        shift = torch.zeros_like(x)
        shift[:, 0] = 0.5 * self.sde.alpha(t).to(x.dtype)
        return super().forward(x - shift, obs, t)


def test_an_ensemble_samples_the_uniform_mixture_of_its_members():
    """Two members whose densities are the helper's Gaussian and the same moved by +0.5 along the
    first action: about half of the samples must come from each (a sample is drawn from a uniformly
    chosen member), each half with its own member's mean."""
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=8, blocks=1, ensemble=2))
    model.networks = torch.nn.ModuleList([ExactNoise(model.sde), _ShiftedNoise(model.sde)])
    obs = np.array([[-1.0, 1.0]])
    mean, _ = gaussian_mean_std(obs)  # first action's mean -0.4, moved: 0.1; std 0.08
    samples = model.sample(torch.as_tensor(obs, dtype=torch.float32), 800, sampler="fast",
                           generator=torch.Generator().manual_seed(0))[0, :, 0].double().numpy()
    upper = samples > mean[0, 0] + 0.25  # halfway: 3 std from either mean
    assert abs(upper.mean() - 0.5) <= 0.07  # binomial(800, 1/2): std 0.018
    assert abs(samples[upper].mean() - (mean[0, 0] + 0.5)) <= 0.02
    assert abs(samples[~upper].mean() - mean[0, 0]) <= 0.02
