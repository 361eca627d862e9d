"""Golden tests: on a fixed batch with fixed weights, each loss equals an independent NumPy
transcription of the seed's equation (float64 NumPy against the float32 torch code)."""

import math

import numpy as np
import pytest
import torch

from behavior_models.data import NormalizationStats
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from rl.algos.arq import ARQ, ARQConfig, effective_sample_fraction
from rl.algos.base import BehaviorInputs
from rl.algos.spot import SPOT, SPOTConfig
from rl.core.buffer import Batch
from rl.core.networks import EnsembleLinear
from tests.rl.helpers import array_cache

S, A, B, N = 3, 2, 4, 5


def np_ensemble_q(q_module, obs, act):
    """Each member's MLP in NumPy from its weights: [E, B]."""
    layers = [m for m in q_module.net if isinstance(m, EnsembleLinear)]
    out = []
    for e in range(q_module.ensemble_size):
        x = np.concatenate([obs, act], -1).astype(np.float64)
        for i, layer in enumerate(layers):
            x = x @ layer.weight[e].detach().double().numpy() + layer.bias[e, 0].detach().double().numpy()
            if i < len(layers) - 1:
                x = np.maximum(x, 0.0)
        out.append(x[..., 0])
    return np.stack(out)


def np_mlp(sequential, x):
    linears = [m for m in sequential if isinstance(m, torch.nn.Linear)]
    x = x.astype(np.float64)
    for i, layer in enumerate(linears):
        x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if i < len(linears) - 1:
            x = np.maximum(x, 0.0)
    return x


def fixed_batch(rng):
    obs, next_obs = rng.normal(size=(B, S)), rng.normal(size=(B, S))
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    return Batch(observations=t(obs), actions=t(rng.uniform(-1, 1, (B, A))), rewards=t(rng.normal(size=B)),
                 next_observations=t(next_obs), next_actions=t(rng.uniform(-1, 1, (B, A))),
                 next_action_valid=t([1, 1, 0, 1]), dones=t([0, 1, 0, 0]), raw_observations=t(obs),
                 raw_next_observations=t(next_obs), indices=torch.arange(B))


class FakeTransitions:
    """Just what array_cache reads."""

    dataset_id, fingerprint, act_dim = "test/golden", "f" * 16, A

    def __len__(self):
        return B


@pytest.mark.parametrize("include_next", [False, True])
def test_arq_kth_max_target_equals_numpy_eq5(include_next):
    rng = np.random.default_rng(0)
    batch = fixed_batch(rng)
    candidates = rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32)
    log_probs = rng.normal(size=(2 * B, N)).astype(np.float32)
    # Next-state rows B..2B-1 keep 5, 2, 1 and 0 candidates (the last falls back to its best log-prob).
    keep = np.ones((2 * B, N), bool)
    keep[B + 1, [0, 2, 4]] = False
    keep[B + 2, [0, 1, 3, 4]] = False
    keep[B + 3] = False
    cache = array_cache(FakeTransitions(), candidates, log_probs, keep)
    k, gamma = 3, 0.9
    torch.manual_seed(0)
    arq = ARQ(ARQConfig(hidden=(8, 8), k=k, gamma=gamma, include_dataset_next_action=include_next), S, A,
              behavior=BehaviorInputs(cache=cache))
    with torch.no_grad():
        for p in arq.critic_target.parameters():  # targets differ from the online critic
            p.add_(0.1 * torch.randn_like(p))
        got = arq.critic_target_value(batch).numpy()

    expected = np.empty(B)
    for i in range(B):
        row = B + i  # next_obs_row of transition i
        kept = keep[row].copy()
        if not kept.any():
            kept[np.argmax(log_probs[row])] = True
        acts = candidates[row][kept]
        if include_next and batch.next_action_valid[i] > 0:
            acts = np.concatenate([acts, batch.next_actions[i:i + 1].numpy()])
        s_next = np.repeat(batch.next_observations[i:i + 1].numpy(), len(acts), 0)
        q = np_ensemble_q(arq.critic_target, s_next, acts).min(0)
        kth = np.sort(q)[::-1][min(k, len(q)) - 1]
        expected[i] = batch.rewards[i].item() + gamma * (1 - batch.dones[i].item()) * kth
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_arq_awr_advantage_is_q_minus_mean_over_kept_candidates():
    rng = np.random.default_rng(1)
    batch = fixed_batch(rng)
    candidates = rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32)
    keep = rng.uniform(size=(2 * B, N)) > 0.4
    keep[:, 0] = True
    cache = array_cache(FakeTransitions(), candidates, rng.normal(size=(2 * B, N)).astype(np.float32), keep)
    torch.manual_seed(0)
    arq = ARQ(ARQConfig(hidden=(8,)), S, A, behavior=BehaviorInputs(cache=cache))
    got = arq.advantage(batch.observations, batch.actions, torch.arange(B)).numpy()
    obs = batch.observations.numpy()
    for i in range(B):
        acts = candidates[i][keep[i]]
        q_c = np_ensemble_q(arq.critic, np.repeat(obs[i:i + 1], len(acts), 0), acts).min(0)
        q_a = np_ensemble_q(arq.critic, obs[i:i + 1], batch.actions[i:i + 1].numpy()).min(0)[0]
        np.testing.assert_allclose(got[i], q_a - q_c.mean(), rtol=1e-5, atol=1e-5)


def test_awr_effective_fraction_is_kish_ess_over_batch_size():
    weights = np.random.default_rng(2).exponential(size=64)
    kish = weights.sum() ** 2 / (weights ** 2).sum()  # Kish's effective sample size
    got = effective_sample_fraction(torch.tensor(weights, dtype=torch.float32)).item()
    np.testing.assert_allclose(got, kish / 64, rtol=1e-5)
    assert effective_sample_fraction(torch.full((8,), 3.0)).item() == pytest.approx(1.0)
    assert effective_sample_fraction(torch.tensor([5.0] + [0.0] * 7)).item() == pytest.approx(1 / 8)


def gaussian_model(seed=0):
    torch.manual_seed(seed)
    model = GaussianBehaviorModel(S, A, GaussianConfig(hidden=(8,)))
    model.set_normalization(NormalizationStats(np.full(S, 0.5, np.float32), np.full(S, 2.0, np.float32)))
    return model.requires_grad_(False)


def np_gaussian_log_prob(model, raw_obs, act):
    out = np_mlp(model.net, (raw_obs - 0.5) / 2.0)
    mean, log_std = out[:, :A], np.clip(out[:, A:], model.config.log_std_min, model.config.log_std_max)
    z = (act - mean) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@pytest.mark.parametrize("units", ["spot_cvae", "nats"])
def test_spot_actor_loss_equals_numpy(units):
    rng = np.random.default_rng(2)
    batch = fixed_batch(rng)
    model = gaussian_model()
    lam, kl_weight = 0.3, 0.5
    torch.manual_seed(1)
    spot = SPOT(SPOTConfig(hidden=(8, 8), lambda_=lam, lambda_units=units, cvae_kl_weight=kl_weight), S, A,
                behavior=BehaviorInputs(model=model))
    loss, _ = spot.actor_loss(batch)

    obs, raw = batch.observations.numpy(), batch.raw_observations.numpy()
    pi = np.tanh(np_mlp(spot.actor.net, obs))
    q1 = np_ensemble_q(spot.critic, obs, pi)[0]
    neg_log_beta = -np_gaussian_log_prob(model, raw, pi)
    lam_nats = lam * kl_weight / (2 * A) if units == "spot_cvae" else lam  # ALGORITHMS.md, CVAE "Units"
    expected = -q1.mean() / np.abs(q1).mean() + lam_nats * neg_log_beta.mean()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5, atol=1e-6)


def test_spot_score_surrogate_has_the_gradient_of_minus_log_beta():
    """density=grad_log_prob (the score model's path) must move the actor exactly as -log beta does."""
    rng = np.random.default_rng(3)
    batch = fixed_batch(rng)
    grads = {}
    for density in ("log_prob", "grad_log_prob"):
        torch.manual_seed(1)
        spot = SPOT(SPOTConfig(hidden=(8, 8), density=density, lambda_=1.0, lambda_units="nats",
                               q_normalization=False), S, A, behavior=BehaviorInputs(model=gaussian_model()))
        spot.critic.requires_grad_(False)
        with torch.no_grad():
            for p in spot.critic.parameters():
                p.zero_()  # Q = 0: only the penalty moves the actor
        loss, _ = spot.actor_loss(batch)
        loss.backward()
        grads[density] = [p.grad.clone() for p in spot.actor.parameters()]
    for a, b in zip(grads["log_prob"], grads["grad_log_prob"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert a.abs().sum() > 0


def test_spot_with_a_cvae_uses_its_one_sample_elbo_and_kl_weight():
    """SPOT's default density: the CVAE's ELBO with L = 1 (not its IW default), lambda in SPOT's
    units converted with the CVAE's own kl_weight."""
    from behavior_models.cvae import CVAEBehaviorModel, CVAEConfig

    rng = np.random.default_rng(4)
    batch = fixed_batch(rng)
    torch.manual_seed(0)
    cvae = CVAEBehaviorModel(S, A, CVAEConfig(hidden=(16,), kl_weight=0.8)).requires_grad_(False)
    spot = SPOT(SPOTConfig(hidden=(8,), lambda_=0.4), S, A, behavior=BehaviorInputs(model=cvae))
    assert spot.lambda_nats == pytest.approx(0.4 * 0.8 / (2 * A))
    actions = torch.as_tensor(rng.uniform(-0.9, 0.9, (B, A)), dtype=torch.float32)
    torch.manual_seed(5)
    penalty, _ = spot.penalty(batch.raw_observations, actions)
    torch.manual_seed(5)
    elbo = cvae.log_prob(batch.raw_observations, actions, estimator="elbo", num_samples=1)
    torch.testing.assert_close(penalty, -elbo)
