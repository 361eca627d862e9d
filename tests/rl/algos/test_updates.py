"""Each algorithm's update lowers its own losses on a tiny real dataset and keeps tensors finite."""

import copy
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from behavior_models.data import NormalizationStats
from rl.algos.arq import ARQConfig
from rl.algos.base import BehaviorInputs
from rl.algos.bc import BCConfig
from rl.algos.spot import SPOTConfig
from rl.core.trainer import Run, RunConfig
from tests.rl.helpers import random_cache


def run_updates(run, steps=300, seed=0):
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        metrics = run.algorithm.update(run.buffer.sample(64, generator))
        history.append({k: float(v) for k, v in metrics.items()})
    for name, tensor in run.algorithm.state_dict().items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name
    for row in history:
        assert all(math.isfinite(v) for v in row.values()), row
    return history


def early_late(history, key, window=30):
    values = [row[key] for row in history if key in row]
    return sum(values[:window]) / window, sum(values[-window:]) / window


def test_bc_lowers_its_loss(env_transitions):
    run = Run.build("bc", env_transitions, BCConfig(hidden=(32, 32)), RunConfig(seed=0))
    early, late = early_late(run_updates(run), "actor_loss")
    assert late < 0.5 * early


@pytest.mark.parametrize("variant", [{}, {"q_target": "sarsa", "num_q": 1, "policy": "explicit"},
                                     {"include_dataset_next_action": True, "actor_type": "deterministic"}])
def test_arq_lowers_critic_and_actor_losses(env_transitions, variant):
    config = ARQConfig(hidden=(32, 32), actor_hidden=(32, 32), reward_transform="minus_one", **variant)
    run = Run.build("arq", env_transitions, config, RunConfig(seed=0),
                    behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions)))
    history = run_updates(run)
    early, late = early_late(history, "critic_loss")
    assert late < 0.5 * early
    early, late = early_late(history, "actor_loss")
    assert late < early


def test_spot_lowers_critic_loss_and_penalty(env_transitions, gaussian_dir):
    config = SPOTConfig(hidden=(32, 32), reward_transform="minus_one", lambda_=1.0, lambda_units="nats")
    run = Run.build("spot", env_transitions, config, RunConfig(seed=0), behavior=str(gaussian_dir))
    initial_actor = copy.deepcopy(run.algorithm.actor)
    history = run_updates(run)
    early, late = early_late(history, "critic_loss")
    assert late < 0.5 * early
    early, late = early_late(history, "neg_log_beta")
    assert late < early
    # The critic moves under the actor, so the actor's loss is compared under the final critic:
    # the trained actor must score better than the initial one on the whole dataset.
    dataset = SimpleNamespace(observations=run.buffer.column("observations"),
                              raw_observations=run.buffer.column("raw_observations"))
    with torch.no_grad():
        trained_loss, _ = run.algorithm.actor_loss(dataset)
        run.algorithm.actor = initial_actor
        initial_loss, _ = run.algorithm.actor_loss(dataset)
    assert trained_loss < initial_loss


def test_arq_policies_act_in_the_box(env_transitions, gaussian_dir):
    """Explicit (AWR), implicit (Eq. 6 over fresh model samples) and behavior-only policies."""
    from behavior_models.errors import ConfigError
    from rl.core.behavior import load_model

    model = load_model(gaussian_dir, env_transitions, "cpu")
    cache = random_cache(env_transitions)
    obs = torch.as_tensor(env_transitions.observations[:7])
    for policy in ("explicit", "implicit", "behavior"):
        run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), actor_hidden=(16,), policy=policy,
                                                          implicit_samples=5), RunConfig(seed=0),
                        behavior_inputs=BehaviorInputs(cache=cache, model=model))
        for deterministic in (True, False):
            actions = run.algorithm.act(obs, obs, deterministic)
            assert actions.shape == (7, 1) and actions.abs().max() <= 1
    assert run.algorithm.update(run.buffer.sample(8, torch.Generator().manual_seed(0))) == {}  # s_psi learns nothing
    with pytest.raises(ConfigError, match="samples the behavior model at act time"):
        Run.build("arq", env_transitions, ARQConfig(policy="implicit"), RunConfig(),
                  behavior_inputs=BehaviorInputs(cache=cache))
    # s_psi alone trained no critic: Eq. 6 would rank its candidates by random weights.
    with pytest.raises(ConfigError, match="trained no critic"):
        run.algorithm.set_acting(policy="implicit")


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_arq_implicit_policy_picks_the_best_advantage_when_deterministic(alpha, env_transitions, gaussian_dir):
    """Eq. 6 with alpha -> argmax: the chosen candidate has the highest Q among the samples, whatever
    alpha (with alpha = 0 the argmax of the flat logits used to return the first candidate)."""
    from rl.core.behavior import load_model

    model = load_model(gaussian_dir, env_transitions, "cpu")
    run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy="implicit", implicit_samples=6, alpha=alpha),
                    RunConfig(seed=0), behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions), model=model))
    obs = torch.as_tensor(env_transitions.observations[:5])
    torch.manual_seed(0)
    candidates = model.sample(obs, 6)
    torch.manual_seed(0)
    chosen = run.algorithm.act(obs, obs, deterministic=True)
    q = run.algorithm.critic(obs.unsqueeze(1).expand(-1, 6, -1), candidates).min(0).values
    torch.testing.assert_close(chosen, candidates[torch.arange(5), q.argmax(1)])


def test_arq_implicit_policy_samples_the_softmax_of_alpha_times_the_advantage(env_transitions, gaussian_dir,
                                                                           monkeypatch):
    """Eq. 6 sampled: over fixed candidates a_1..a_5, P(a_i | s) = softmax_i(alpha (Q(s,a_i) - mean_j Q(s,a_j)))
    with Q the min of the critics. Many draws at two states; frequencies within 4 standard errors."""
    from rl.core.behavior import load_model

    model = load_model(gaussian_dir, env_transitions, "cpu")
    candidates = torch.tensor([[-0.9], [-0.4], [0.0], [0.5], [0.95]])
    draws = 4000  # per state
    states = torch.as_tensor(env_transitions.observations[[3, 100]])
    obs = states.repeat_interleave(draws, 0)
    monkeypatch.setattr(model, "sample", lambda raw, n, **_: candidates.expand(len(raw), n, 1).clone())
    run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy="implicit", implicit_samples=5),
                    RunConfig(seed=0), behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions), model=model))
    with torch.no_grad():
        q = run.algorithm.critic(states.unsqueeze(1).expand(-1, 5, -1), candidates.expand(2, 5, 1)).min(0).values
    q = q.double().numpy()
    # alpha puts about 3 nats between the best and worst candidate, so the softmax is far from uniform
    # and far from its mirror image (the sign of the logits flipped).
    alpha = 3.0 / float((q.max(1) - q.min(1)).min())
    run.algorithm.config = dataclasses.replace(run.algorithm.config, alpha=alpha)
    logits = alpha * (q - q.mean(1, keepdims=True))
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # [2, 5]
    assert expected.max() > 0.4 and expected.min() < 0.1
    actions = run.algorithm.act(obs, obs, deterministic=False)
    index = (actions - candidates.T).abs().argmin(1).reshape(2, draws).numpy()
    assert np.allclose(candidates.numpy()[index.ravel(), 0], actions.numpy()[:, 0])  # always one of the candidates
    frequency = np.stack([np.bincount(row, minlength=5) / draws for row in index])
    standard_error = np.sqrt(expected * (1 - expected) / draws)
    assert (np.abs(frequency - expected) < 4 * standard_error + 1e-9).all(), (frequency, expected)


def test_behavior_models_are_asked_at_the_raw_states(env_transitions, gaussian_dir, monkeypatch):
    """Networks see normalised states, behavior models the stored ones (they normalise their own):
    ARQ's implicit and behaviour policies sample, BEAR's update samples and SPOT's penalty scores the
    model at raw states. A spy records what the model was given."""
    from rl.algos.bear import BEARConfig
    from rl.core.behavior import load_model

    model = load_model(gaussian_dir, env_transitions, "cpu")
    seen = []
    for method in ("sample", "log_prob"):
        real = getattr(model, method)
        monkeypatch.setattr(model, method, lambda obs, *args, _real=real, **kwargs: (seen.append(obs),
                                                                                   _real(obs, *args, **kwargs))[1])
    raw = torch.as_tensor(env_transitions.observations[:7])
    for policy in ("implicit", "behavior"):
        run = Run.build("arq", env_transitions, ARQConfig(hidden=(16,), policy=policy, implicit_samples=5),
                        RunConfig(seed=0), behavior_inputs=BehaviorInputs(cache=random_cache(env_transitions), model=model))
        seen.clear()
        run.algorithm.act(3.0 * raw - 1.0, raw, deterministic=True)
        assert seen and all(torch.equal(obs, raw) for obs in seen), policy
    for name, config in (("bear", BEARConfig(hidden=(16,), mmd_samples=3, target_samples=3)),
                         ("spot", SPOTConfig(hidden=(16,)))):
        run = Run.build(name, env_transitions, config, RunConfig(seed=0), behavior_inputs=BehaviorInputs(model=model))
        batch = run.buffer.sample(8, torch.Generator().manual_seed(0))
        assert not torch.equal(batch.observations, batch.raw_observations)  # states are normalised here
        seen.clear()
        for _ in range(2):  # SPOT's actor (and its penalty) steps every second update
            run.algorithm.update(batch)
        assert seen and all(torch.equal(obs, batch.raw_observations) for obs in seen), name
