"""Flow-specific checks that need no fit: exact normalisation over the box, config errors."""

import pytest
import torch

from behavior_models.errors import ConfigError
from behavior_models.flow import FlowBehaviorModel, FlowConfig


def _box_mass(model, obs, points):
    """Integral of exp(log_prob) over [-(1-delta), 1-delta]^A, plus the sampled mass beyond it.

    The integral runs on a grid in u = atanh(a) (da = (1 - a^2) du), where the integrand is
    smooth; the mass the tanh bijection puts within delta of the faces is estimated from
    samples, so the sum checks log_prob against the sampler as well as the normalisation.
    """
    bound = 1.0 - model.config.boundary_delta
    u = torch.linspace(-float(torch.atanh(torch.tensor(bound))), float(torch.atanh(torch.tensor(bound))), points,
                       dtype=torch.float64)
    grids = torch.meshgrid(*[u] * model.act_dim, indexing="ij")
    u_all = torch.stack([g.reshape(-1) for g in grids], 1)
    act = torch.tanh(u_all)
    obs_all = torch.as_tensor(obs, dtype=torch.float64).repeat(len(act), 1)
    with torch.no_grad():
        integrand = (model.log_prob(obs_all, act).exp() * (1 - act.pow(2)).prod(1)).reshape([points] * model.act_dim)
        samples = model.sample(torch.as_tensor(obs, dtype=torch.float64)[None], 20_000)[0]
    for _ in range(model.act_dim):
        integrand = torch.trapezoid(integrand, u)
    return float(integrand) + float((samples.abs() > bound).any(1).double().mean())


def _untrained_flow(transform: str, seed: int) -> FlowBehaviorModel:
    """A 1-D flow on 2-D states with random weights (std 0.1), in float64: what these tests check
    (the change of variables, the sampler against the density) needs no fit."""
    torch.manual_seed(seed)
    model = FlowBehaviorModel(2, 1, FlowConfig(transform=transform, hidden=16, num_transforms=2)).double()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    return model


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_density_integrates_to_one_over_the_box(transform):
    # Untrained flows with random weights: the change of variables alone must make it exact.
    model = _untrained_flow(transform, seed=0)
    for obs in ([0.0, 0.0], [1.5, -2.0]):
        assert _box_mass(model, obs, 4001) == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_samples_follow_the_density_in_one_dimension(transform):
    # Kolmogorov-Smirnov over the box interior: the mass log_prob puts between -(1-delta) and a,
    # integrated on a grid in u = atanh(a), against the fraction of 20,000 samples there. The
    # integral test above sees the sampler only through the mass beyond the edge; this sees a
    # sampler that disagrees with the density anywhere (critical distance at n = 20,000, level
    # 0.001: 0.014).
    model = _untrained_flow(transform, seed=2)
    obs = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    bound = 1.0 - model.config.boundary_delta
    edge = float(torch.atanh(torch.tensor(bound, dtype=torch.float64)))
    u = torch.linspace(-edge, edge, 4001, dtype=torch.float64)
    with torch.no_grad():
        act = torch.tanh(u)[:, None]
        density_u = model.log_prob(obs.repeat(len(u), 1), act).exp() * (1 - act[:, 0].pow(2))
        samples = model.sample(obs, 20_000)[0, :, 0]
    interior_mass = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(density_u, u)])
    sample_u = torch.atanh(samples).sort().values  # +-inf for samples clipped to +-1
    below = torch.searchsorted(sample_u, torch.tensor([-edge], dtype=torch.float64)).double()
    empirical = (torch.searchsorted(sample_u, u, right=True).double() - below) / len(sample_u)
    assert float(interior_mass[-1]) > 0.9  # most of the mass is inside, where the check looks
    assert float((empirical - interior_mass).abs().max()) <= 0.02


def test_density_in_two_dimensions_integrates_to_one():
    torch.manual_seed(1)
    model = FlowBehaviorModel(1, 2, FlowConfig(transform="spline", hidden=16, num_transforms=2)).double()
    assert _box_mass(model, [0.3], 401) == pytest.approx(1.0, abs=2e-2)


def test_without_the_bijection_samples_can_leave_the_box_and_are_clipped():
    torch.manual_seed(0)
    model = FlowBehaviorModel(1, 1, FlowConfig(transform="affine", hidden=8, num_transforms=1, box_bijection="none"))
    samples = model.sample(torch.zeros(2, 1), 2000)
    assert samples.abs().max() <= 1 and (samples.abs() == 1).any()  # N(0,1)-like base: mass outside, clipped


def test_unknown_options_are_refused():
    with pytest.raises(ConfigError, match="transform"):
        FlowBehaviorModel(1, 1, FlowConfig(transform="glow"))
    with pytest.raises(ConfigError, match="box_bijection"):
        FlowBehaviorModel(1, 1, FlowConfig(box_bijection="sigmoid"))


@pytest.mark.parametrize("grad_clip", [0.0, -1.0, float("nan")])
def test_a_grad_clip_that_would_zero_every_gradient_is_refused(grad_clip):
    # clip_grad_norm_(max_norm=0) scales every gradient to 0: the fit ran its steps and learned nothing.
    with pytest.raises(ConfigError, match="grad_clip must be > 0"):
        FlowConfig(grad_clip=grad_clip)
    FlowConfig(grad_clip=float("inf"))  # no clipping


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_transforms", 0, "num_transforms must be at least 1, got 0"),  # was N(0, I) in atanh space for every state
    ("hidden", 0, "hidden must be at least 1, got 0"),  # MADE of width 0: state ignored
    ("num_bins", 0, "num_bins must be at least 1, got 0"),  # was nflows' "negative dimension" RuntimeError
    ("tail_bound", 0.0, "tail_bound must be > 0, got 0.0"),  # spline all identity tails: as num_transforms=0
])
def test_flow_sizes_that_ignore_the_state_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        FlowConfig(**{field: value})
