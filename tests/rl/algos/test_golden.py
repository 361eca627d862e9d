"""Golden tests: on a fixed batch with fixed weights, each loss equals an independent NumPy
transcription of the seed's equation (float64 NumPy against the float32 torch code).

The NumPy side reads only the networks' weights and re-implements their forward passes and the
equation; randomness is shared by re-drawing the code's seeded draws (``torch.manual_seed`` then
the same ``torch.randn`` shape) or by a fixed behaviour-sample stub. Covered:

* ARQ (seed 002): the K-th-max target of Eq. 5 (with the include-next-action deviation) and the
  critic loss, the sum over the two Q's of the mean squared error to it; the
  advantage of Eq. 6, A = Q - mean of Q over the kept candidates; the explicit policy's AWR loss
  of Algorithm 1, -E[min(exp(alpha A), clip) log pi(a|s)] (Gaussian) and its weighted squared
  error (deterministic); the Q^beta (SARSA) ablation's target r + gamma (1 - d) Q'(s', a') and
  its loss masked to transitions with a valid a' or a termination; Kish's effective fraction.
* TD3's target (Fujimoto et al. 2018, shared by TD3+BC, TD3BC++ and SPOT):
  y = r + gamma (1 - d) min_j Q'_j(s', clip(pi'(s') + clip(sigma eps, -c, c), -1, 1)), and its delayed
  policy updates: the actor and the targets move only on every policy_freq-th (second) update.
* BEAR / BEAR++ (seed 001, Eq. 5, 10, 11): the critic target
  y = r + gamma (1 - d) max_i [lam min_j Q'_j(s', a'_i) + (1 - lam) max_j Q'_j(s', a'_i)], a'_i ~ pi'(.|s');
  the actor loss, -E_s[min_j mean_i Q_j(s, a_i)] + alpha (E_s[MMD W] - eps) after the warm start
  and E_s[alpha MMD W] during it, with W of Eq. 10 on the behaviour samples for BEAR++ (1 for
  BEAR); and the dual loss -alpha (E_s[MMD W] - eps) of the Lagrange multiplier.
* SPOT (seed 004): the actor loss, its score-model surrogate and its CVAE density and units.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from behavior_models.data import NormalizationStats
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from rl.algos.arq import ARQ, ARQConfig, effective_sample_fraction, kth_max_target
from rl.algos.base import BehaviorInputs
from rl.algos.bear import BEAR, BEARConfig, BEARPlusPlus, BEARPlusPlusConfig
from rl.algos.spot import SPOT, SPOTConfig
from rl.algos.td3bc import TD3BC, TD3BCConfig, TD3BCPlusPlus, TD3BCPlusPlusConfig
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


def raw_of(normalised):
    """The stored observations behind normalised ones (another affine map, as the buffer's z-score
    undone), so a network fed raw states, or a behavior model fed normalised ones, is caught."""
    return 2.0 * normalised + 0.5


def fixed_batch(rng):
    obs, next_obs = rng.normal(size=(B, S)), rng.normal(size=(B, S))
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    return Batch(observations=t(obs), actions=t(rng.uniform(-1, 1, (B, A))), rewards=t(rng.normal(size=B)),
                 next_observations=t(next_obs), next_actions=t(rng.uniform(-1, 1, (B, A))),
                 next_action_valid=t([1, 1, 0, 1]), dones=t([0, 1, 0, 0]), raw_observations=t(raw_of(obs)),
                 raw_next_observations=t(raw_of(next_obs)), indices=torch.arange(B))


class FakeTransitions:
    """Just what array_cache reads."""

    dataset_id, fingerprint, act_dim = "test/golden", "f" * 16, A

    def __len__(self):
        return B


@pytest.mark.parametrize("dones", [(0, 1, 0, 0), (0, 0, 0, 0)])
@pytest.mark.parametrize("include_next", [False, True])
def test_arq_kth_max_target_equals_numpy_eq5(include_next, dones):
    """Without terminations every row bootstraps, so K clipped to the 2 and 1 kept candidates of
    transitions 1 and 2, and the fallback of transition 3, each set a target."""
    rng = np.random.default_rng(0)
    batch = dataclasses.replace(fixed_batch(rng), dones=torch.tensor(dones, dtype=torch.float32))
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

    expected = np_eq5_target(arq.critic_target, batch, candidates, log_probs, keep, k, gamma, include_next)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 9])
def test_kth_max_target_is_the_kth_largest_kept_value_with_k_clipped_to_the_count(k):
    rng = np.random.default_rng(3)
    q = rng.normal(size=(64, 6))
    keep = rng.random((64, 6)) < 0.5
    keep[np.arange(64), rng.integers(0, 6, 64)] = True  # every row keeps one at least
    got = kth_max_target(torch.as_tensor(q), torch.as_tensor(keep), k).numpy()
    expected = [np.sort(row[kept])[::-1][min(k, kept.sum()) - 1] for row, kept in zip(q, keep)]
    np.testing.assert_array_equal(got, expected)


def test_arq_invalid_dataset_next_action_never_joins_the_candidates():
    """include_dataset_next_action keeps a' only where it exists: a truncated episode's last step has
    no a' (the buffer stores zeros there), so y of that row must not depend on the stored value.
    Transition 2 has none; over a sweep of stored values its target stays Eq. 5's over the cache alone,
    where counting the value as a candidate would change it."""
    rng = np.random.default_rng(0)
    batch = fixed_batch(rng)
    candidates = rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32)
    log_probs = rng.normal(size=(2 * B, N)).astype(np.float32)
    keep = np.ones((2 * B, N), bool)
    keep[B + 2, [0, 1, 3, 4]] = False  # s' of transition 2 keeps one candidate: K = 3 clips to 1 (or 2 with a')
    cache = array_cache(FakeTransitions(), candidates, log_probs, keep)
    torch.manual_seed(0)
    arq = ARQ(ARQConfig(hidden=(8, 8), k=3, gamma=0.9, include_dataset_next_action=True), S, A,
              behavior=BehaviorInputs(cache=cache))
    perturb(arq.critic_target)
    assert batch.next_action_valid[2] == 0
    changed = False
    for value in np.linspace(-1, 1, 9):
        next_actions = batch.next_actions.clone()
        next_actions[2] = float(value)
        swept = dataclasses.replace(batch, next_actions=next_actions)
        with torch.no_grad():
            got = arq.critic_target_value(swept).numpy()
        expected = np_eq5_target(arq.critic_target, swept, candidates, log_probs, keep, 3, 0.9, include_next=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        counted = dataclasses.replace(swept, next_action_valid=torch.ones(B))
        wrong = np_eq5_target(arq.critic_target, counted, candidates, log_probs, keep, 3, 0.9, include_next=True)
        changed |= abs(wrong[2] - expected[2]) > 1e-3
    assert changed  # the sweep reaches values that counting a' would let into the target


def np_eq5_target(critic_target, batch, candidates, log_probs, keep, k, gamma, include_next=False):
    """y of Eq. 5 for transition i from the candidates at cache row B + i (its s'), [B]."""
    expected = np.empty(B)
    for i in range(B):
        row = B + i  # next_obs_row of transition i
        kept = keep[row].copy()
        next_kept = include_next and batch.next_action_valid[i] > 0
        if not kept.any() and not next_kept:  # the fallback, for a state with nothing kept
            kept[np.argmax(log_probs[row])] = True
        acts = candidates[row][kept]
        if next_kept:
            acts = np.concatenate([acts, batch.next_actions[i:i + 1].numpy()])
        s_next = np.repeat(batch.next_observations[i:i + 1].numpy(), len(acts), 0)
        q = np_ensemble_q(critic_target, s_next, acts).min(0)
        kth = np.sort(q)[::-1][min(k, len(q)) - 1]
        expected[i] = batch.rewards[i].item() + gamma * (1 - batch.dones[i].item()) * kth
    return expected


def test_arq_critic_loss_equals_numpy_sum_over_the_ensemble_of_the_mse_to_eq5():
    """Seed 002, Eq. 5: L(theta) = sum_j E_D[(Q_j(s, a) - y)^2], y the K-th-max target, for each of the
    two Q's; logged before the critic's step."""
    rng = np.random.default_rng(10)
    batch, candidates, keep, cache = batch_and_masked_cache(rng)
    log_probs = cache.log_probs.numpy()
    k, gamma = 2, 0.9
    torch.manual_seed(8)
    arq = ARQ(ARQConfig(hidden=(8, 8), actor_hidden=(8,), k=k, gamma=gamma), S, A, behavior=BehaviorInputs(cache=cache))
    perturb(arq.critic_target)

    y = np_eq5_target(arq.critic_target, batch, candidates, log_probs, keep, k, gamma)
    q = np_ensemble_q(arq.critic, batch.observations.numpy(), batch.actions.numpy())  # [2, B]
    assert np.abs(q[0] - q[1]).min() > 1e-3  # the two members' errors differ
    expected = sum(((q[j] - y) ** 2).mean() for j in range(2))
    metrics = arq.update(batch)
    np.testing.assert_allclose(metrics["critic_loss"].item(), expected, rtol=1e-5, atol=1e-6)


def batch_and_masked_cache(rng):
    """A fixed batch and a cache of N candidates per state, about 40% of them dropped (never all)."""
    batch = fixed_batch(rng)
    candidates = rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32)
    keep = rng.uniform(size=(2 * B, N)) > 0.4
    keep[:, 0] = True
    cache = array_cache(FakeTransitions(), candidates, rng.normal(size=(2 * B, N)).astype(np.float32), keep)
    return batch, candidates, keep, cache


def test_arq_awr_advantage_is_q_minus_mean_over_kept_candidates():
    rng = np.random.default_rng(1)
    batch, candidates, keep, cache = batch_and_masked_cache(rng)
    torch.manual_seed(0)
    arq = ARQ(ARQConfig(hidden=(8,)), S, A, behavior=BehaviorInputs(cache=cache))
    perturb(arq.critic_target)  # Eq. 6's A is the current Q_theta's
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
    # No actor dropout (the maze setting): Eq. 9 is the transcription's subject, not a random mask.
    spot = SPOT(SPOTConfig(hidden=(8, 8), lambda_=lam, lambda_units=units, cvae_kl_weight=kl_weight, actor_dropout=0.0),
                S, A, behavior=BehaviorInputs(model=model))
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
    wide = CVAEBehaviorModel(S, A, CVAEConfig(hidden=(16,), kl_weight=0.8, latent_factor=3)).requires_grad_(False)
    wide_spot = SPOT(SPOTConfig(hidden=(8,), lambda_=0.4), S, A, behavior=BehaviorInputs(model=wide))
    assert wide_spot.lambda_nats == pytest.approx(0.4 * 0.8 / (3 * A))  # its KL is averaged over 3A latents
    actions = torch.as_tensor(rng.uniform(-0.9, 0.9, (B, A)), dtype=torch.float32)
    torch.manual_seed(5)
    penalty, _ = spot.penalty(batch.raw_observations, actions)
    torch.manual_seed(5)
    elbo = cvae.log_prob(batch.raw_observations, actions, estimator="elbo", num_samples=1)
    torch.testing.assert_close(penalty, -elbo)


# ---------------------------------------------------------------------------------- shared helpers
def t32(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def cross_members(critic, obs):
    """Make the two members' Q's cross in the action: member 1 becomes member 0's network with the
    action's sign flipped in its first layer, its output shifted to member 0's mean over uniform
    actions at these states, so neither member is the lower one at every action."""
    layers = [m for m in critic.net if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for layer in layers:
            layer.weight[1].copy_(layer.weight[0])
            layer.bias[1].copy_(layer.bias[0])
        layers[0].weight[1, obs.shape[1]:].neg_()
        states = obs.repeat_interleave(64, 0)
        q = critic(states, torch.rand(len(states), critic.act_dim) * 2 - 1)
        layers[-1].bias[1].add_((q[0] - q[1]).mean())


def perturb(module, scale=0.1):
    """Move a (target) network's weights away from its online copy's."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def np_tanh_gaussian_actions(actor, obs, eps):
    """tanh(mu(s) + sigma(s) eps) for a TanhGaussianActor from its weights; eps [n, B, A] -> [B, n, A]."""
    out = np_mlp(actor.net, obs)
    mean, log_std = out[:, :A], np.clip(out[:, A:], actor.log_std_min, actor.log_std_max)
    return np.tanh(mean[:, None] + np.exp(log_std)[:, None] * eps.astype(np.float64).transpose(1, 0, 2))


def np_mmd(x, y, kernel, sigma):
    """BEAR's biased MMD per state between x [B, n, A] and y [B, m, A], kernel divisor 2 sigma,
    sqrt(MMD^2 + 1e-6) as in BEAR's reference code (ALGORITHMS.md "BEAR")."""
    def mean_k(a, b):
        d = a[:, :, None, :] - b[:, None, :, :]
        dist = np.abs(d).sum(-1) if kernel == "laplacian" else (d ** 2).sum(-1)
        return np.exp(-dist / (2 * sigma)).mean((1, 2))
    return np.sqrt(mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y) + 1e-6)


# ---------------------------------------------------------------------------------- ARQ: AWR and Q^beta
@pytest.mark.parametrize("actor_type", ["gaussian", "deterministic"])
def test_arq_awr_actor_loss_equals_numpy_algorithm_1(actor_type):
    """Seed 002, Algorithm 1 (second loop): L(phi) = -E_D[w log pi_phi(a|s)], w = min(exp(alpha A), 100),
    A(s,a) = Q(s,a) - mean_{a' kept at s} Q(s,a') (Eq. 6) with Q = min of the two critics; for the
    deterministic policy (App. A.2, AntMaze) the weighted squared error E_D[w ||pi(s) - a||^2]."""
    rng = np.random.default_rng(5)
    batch, candidates, keep, cache = batch_and_masked_cache(rng)
    alpha, clip = 40.0, 100.0  # clip: ARQConfig.awr_max_weight's default
    torch.manual_seed(3)
    arq = ARQ(ARQConfig(hidden=(8, 8), actor_hidden=(8,), alpha=alpha, awr_max_weight=clip, actor_type=actor_type),
              S, A, behavior=BehaviorInputs(cache=cache))
    with torch.no_grad():
        arq.critic.net[-1].weight.mul_(20.0)  # spread Q so that some weights reach the clip
        if actor_type == "gaussian":
            arq.actor.log_std.copy_(torch.tensor([-0.3, 0.4]))

    obs, act = batch.observations.numpy(), batch.actions.numpy().astype(np.float64)
    adv = np.empty(B)
    for i in range(B):
        kept = candidates[i][keep[i]]
        q_kept = np_ensemble_q(arq.critic, np.repeat(obs[i:i + 1], len(kept), 0), kept).min(0)
        adv[i] = np_ensemble_q(arq.critic, obs[i:i + 1], act[i:i + 1]).min(0)[0] - q_kept.mean()
    raw_weight = np.exp(alpha * adv)
    assert (raw_weight > clip).any() and (raw_weight < clip).any()  # both sides of the clip are exercised
    weight = np.minimum(raw_weight, clip)
    mu = np.tanh(np_mlp(arq.actor.net, obs))
    if actor_type == "gaussian":
        log_std = arq.actor.log_std.detach().double().numpy()
        log_pi = (-0.5 * ((act - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        expected = -(weight * log_pi).mean()
    else:
        expected = (weight * ((mu - act) ** 2).sum(-1)).mean()

    metrics = arq.update_actor(batch)  # the loss is logged before the actor's step
    np.testing.assert_allclose(metrics["awr_weight_mean"].item(), weight.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["actor_loss"].item(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_q", [1, 2])
def test_arq_q_beta_sarsa_target_and_masked_loss_equal_numpy(num_q):
    """Seed 002, Table 2's Q^beta ablation: y = r + gamma (1 - d) min_j Q'_j(s', a'_D) with the dataset's
    next action; the squared error sum_j E[(Q_j(s,a) - y)^2] over the transitions that have an a' or
    end in a termination (a truncated episode's last step has nothing to bootstrap from)."""
    rng = np.random.default_rng(6)
    batch = fixed_batch(rng)
    # Row 1 terminates without a next action (kept, y = r); row 2 is truncated without one (left out).
    valid = np.array([1.0, 0.0, 0.0, 1.0])
    batch = dataclasses.replace(batch, next_action_valid=t32(valid),
                                next_actions=batch.next_actions * t32(valid)[:, None])
    cache = array_cache(FakeTransitions(), rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32))
    gamma = 0.9
    torch.manual_seed(4)
    arq = ARQ(ARQConfig(hidden=(8, 8), q_target="sarsa", num_q=num_q, gamma=gamma, policy="explicit"), S, A,
              behavior=BehaviorInputs(cache=cache))
    perturb(arq.critic_target)

    r, d = batch.rewards.numpy().astype(np.float64), batch.dones.numpy().astype(np.float64)
    q_next = np_ensemble_q(arq.critic_target, batch.next_observations.numpy(), batch.next_actions.numpy()).min(0)
    y = r + gamma * (1 - d) * q_next
    q = np_ensemble_q(arq.critic, batch.observations.numpy(), batch.actions.numpy())  # [E, B]
    usable = np.array([1.0, 1.0, 0.0, 1.0])
    expected_loss = sum(((q[j] - y) ** 2 * usable).sum() / usable.sum() for j in range(num_q))

    with torch.no_grad():
        np.testing.assert_allclose(arq.critic_target_value(batch).numpy(), y, rtol=1e-5, atol=1e-5)
    metrics = arq.update(batch)  # the loss is logged before the critic's step
    np.testing.assert_allclose(metrics["critic_loss"].item(), expected_loss, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- TD3's target
def td3_family(name):
    kwargs = {"hidden": (8, 8), "gamma": 0.9, "policy_noise": 0.5, "noise_clip": 0.3}
    if name == "td3bc":
        return TD3BC(TD3BCConfig(**kwargs), S, A)
    if name == "td3bc++":
        return TD3BCPlusPlus(TD3BCPlusPlusConfig(**kwargs), S, A)
    # without the locomotion actor's dropout, whose random mask the transcription does not draw
    return SPOT(SPOTConfig(**kwargs, actor_dropout=0.0), S, A, behavior=BehaviorInputs(model=gaussian_model()))


@pytest.mark.parametrize("name", ["td3bc", "td3bc++", "spot"])
def test_td3_target_equals_numpy_clipped_double_q_with_smoothing(name):
    """TD3 (Fujimoto et al. 2018), the critic target of TD3+BC / TD3BC++ (seed 001) and SPOT (seed 004):
    y = r + gamma (1 - d) min_j Q'_j(s', clip(pi'(s') + clip(sigma eps, -c, c), -1, 1)), eps ~ N(0, I)."""
    rng = np.random.default_rng(7)
    batch = fixed_batch(rng)
    torch.manual_seed(2)
    algo = td3_family(name)
    perturb(algo.critic_target)
    perturb(algo.actor_target)
    with torch.no_grad():
        algo.actor_target.net[-1].bias.copy_(torch.tensor([1.5, -1.5]))  # pi'(s') near the box edges
    torch.manual_seed(11)
    got = algo.td3_target(batch).numpy()
    torch.manual_seed(11)
    eps = torch.randn(B, A).double().numpy()  # the code's one draw: randn_like(pi'(s'))

    c = algo.config
    noise = np.clip(c.policy_noise * eps, -c.noise_clip, c.noise_clip)
    smoothed = np.tanh(np_mlp(algo.actor_target.net, batch.next_observations.numpy())) + noise
    assert (np.abs(c.policy_noise * eps) > c.noise_clip).any() and (np.abs(smoothed) > 1).any()  # both clips bite
    q_next = np_ensemble_q(algo.critic_target, batch.next_observations.numpy(), np.clip(smoothed, -1, 1))
    assert np.abs(q_next[0] - q_next[1]).min() > 1e-3  # the min over the two critics matters
    expected = (batch.rewards.numpy() + c.gamma * (1 - batch.dones.numpy()) * q_next.min(0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_td3_actor_and_targets_change_only_on_every_second_update():
    """TD3's delayed policy updates (policy_freq = 2): the critic steps on every update; the actor and
    both target networks only on updates 2, 4, 6."""
    batch = fixed_batch(np.random.default_rng(11))
    torch.manual_seed(3)
    algo = td3_family("td3bc")
    assert algo.config.policy_freq == 2
    modules = {"critic": algo.critic, "actor": algo.actor, "actor_target": algo.actor_target,
               "critic_target": algo.critic_target}
    snapshot = lambda: {name: [p.detach().clone() for p in m.parameters()] for name, m in modules.items()}  # noqa: E731
    changed = {name: [] for name in modules}
    for update in range(1, 7):
        before = snapshot()
        algo.update(batch)
        after = snapshot()
        for name in modules:
            if any(not torch.equal(a, b) for a, b in zip(before[name], after[name])):
                changed[name].append(update)
    assert changed == {"critic": [1, 2, 3, 4, 5, 6], "actor": [2, 4, 6], "actor_target": [2, 4, 6],
                       "critic_target": [2, 4, 6]}


# ---------------------------------------------------------------------------------- BEAR and BEAR++
class FixedBehavior:
    """A behavior model whose samples are given: the behaviour side of the MMD, shared by both sides.
    It must be asked at the batch's raw (stored) states, as any zoo model is."""

    def __init__(self, samples):
        self.samples = samples
        self.expected_raw_obs = None  # set by the test to the batch's raw_observations

    def sample(self, raw_obs, n):
        assert raw_obs.shape[0] == self.samples.shape[0] and n == self.samples.shape[1]
        if self.expected_raw_obs is not None:
            assert torch.equal(raw_obs, self.expected_raw_obs), "the behavior model was not given the raw states"
        return self.samples.clone()


def bear(relaxation, behavior_samples=None, **kwargs):
    config_class, algo_class = (BEARPlusPlusConfig, BEARPlusPlus) if relaxation else (BEARConfig, BEAR)
    model = FixedBehavior(t32(behavior_samples if behavior_samples is not None else np.zeros((B, 4, A))))
    return algo_class(config_class(hidden=(8, 8), **kwargs), S, A, behavior=BehaviorInputs(model=model))


def test_bear_critic_target_equals_numpy():
    """BEAR's target (ALGORITHMS.md "BEAR"; BEAR's Algorithm 1, after BCQ): m actions a'_i ~ pi'(.|s'),
    y = r + gamma (1 - d) max_i [lam min_j Q'_j(s', a'_i) + (1 - lam) max_j Q'_j(s', a'_i)]."""
    rng = np.random.default_rng(8)
    batch = fixed_batch(rng)
    m, lam, gamma = 6, 0.75, 0.9
    torch.manual_seed(5)
    algo = bear(False, target_samples=m, target_lambda=lam, gamma=gamma)
    perturb(algo.critic_target)
    perturb(algo.actor_target)
    torch.manual_seed(12)
    got = algo.critic_target_value(batch).numpy()
    torch.manual_seed(12)
    eps = torch.randn(m, B, A).numpy()  # the code's one draw: rsample((m,)) of pi'(.|s')

    next_obs = batch.next_observations.numpy()
    acts = np_tanh_gaussian_actions(algo.actor_target, next_obs, eps)  # [B, m, A]
    q = np_ensemble_q(algo.critic_target, np.repeat(next_obs[:, None], m, 1), acts)  # [2, B, m]
    soft = lam * q.min(0) + (1 - lam) * q.max(0)
    expected = batch.rewards.numpy() + gamma * (1 - batch.dones.numpy()) * soft.max(1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("warm,relaxation,kernel", [(True, False, "laplacian"), (False, False, "laplacian"),
                                                    (False, True, "gaussian"), (True, True, "laplacian")])
def test_bear_actor_and_alpha_losses_equal_numpy(warm, relaxation, kernel):
    """BEAR's Lagrangian of seed 001, Eq. 5 (BEAR) / Eq. 11 (BEAR++), for n samples a_i ~ pi(.|s) and
    n behaviour samples b_i:
    L_pi = -E_s[min_j mean_i Q_j(s, a_i)] + alpha (E_s[MMD(b, a) W] - eps) after the warm start,
    L_pi = E_s[alpha MMD(b, a) W] during it (BEAR's MMD-only phase); W = 1 for BEAR and, for BEAR++,
    Eq. 10's batch min-max normalisation of Q(s, beta(s)) (both critics' mean over the b_i);
    the dual step minimises -alpha (E_s[MMD W] - eps), alpha = exp(log alpha)."""
    rng = np.random.default_rng(9)
    batch = fixed_batch(rng)
    n, sigma, epsilon, log_alpha = 5, 0.7, 0.05, 0.4
    behavior = rng.uniform(-1, 1, size=(B, n, A)).astype(np.float32)
    torch.manual_seed(6)
    algo = bear(relaxation, behavior, mmd_samples=n, mmd_kernel=kernel, mmd_sigma=sigma, epsilon=epsilon,
                warmup_steps=3)
    perturb(algo.critic_target)  # the loss must read the online critic, Eq. 10's W included
    perturb(algo.actor_target)
    cross_members(algo.critic, batch.observations)  # so that min_j mean_i differs from mean_i min_j
    algo.updates = 0 if warm else 3
    with torch.no_grad():
        algo.log_alpha.fill_(log_alpha)
    torch.manual_seed(13)
    loss, mean_constraint, _ = algo.actor_loss(batch.observations, batch.raw_observations)
    dual = algo.alpha_loss(mean_constraint)
    torch.manual_seed(13)
    eps = torch.randn(n, B, A).numpy()  # the code's one draw: rsample((n,)) of pi(.|s)

    obs = batch.observations.numpy()
    states = np.repeat(obs[:, None], n, 1)
    acts = np_tanh_gaussian_actions(algo.actor, obs, eps)  # [B, n, A]
    divergence = np_mmd(behavior.astype(np.float64), acts, kernel, sigma)
    if relaxation:
        q_beta = np_ensemble_q(algo.critic, states, behavior).mean((0, 2))
        weight = (q_beta - q_beta.min()) / (q_beta.max() - q_beta.min() + 1e-6)  # Eq. 10 (+ a 0/0 guard)
        assert 0.05 < np.median(weight) < 0.95
    else:
        weight = np.ones(B)
    alpha = math.exp(log_alpha)
    constraint = (divergence * weight).mean()
    if warm:
        expected = (alpha * divergence * weight).mean()
    else:
        q_members = np_ensemble_q(algo.critic, states, acts)  # [2, B, n]
        q_pi = q_members.mean(2).min(0)  # [B]
        assert np.abs(q_pi - q_members.min(0).mean(1)).max() > 1e-3  # the order of min and mean shows
        expected = -q_pi.mean() + alpha * (constraint - epsilon)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_constraint.item(), constraint, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dual.item(), -alpha * (constraint - epsilon), rtol=1e-5, atol=1e-7)


def test_bc_loss_is_the_mean_squared_error_to_the_dataset_actions():
    """BC: L(phi) = mean over batch and action dims of (tanh(MLP(s)) - a)^2, a the dataset action at s."""
    from rl.algos.bc import BC, BCConfig

    batch = fixed_batch(np.random.default_rng(12))
    torch.manual_seed(0)
    algo = BC(BCConfig(hidden=(8,)), S, A)
    pi = np.tanh(np_mlp(algo.actor.net, batch.observations.numpy()))
    expected = ((pi - batch.actions.double().numpy()) ** 2).mean()
    np.testing.assert_allclose(algo.update(batch)["actor_loss"].item(), expected, rtol=1e-5)  # logged before the step
