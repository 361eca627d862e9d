"""Each algorithm's update lowers its own losses on a tiny real dataset and keeps tensors finite."""

import copy
import math

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
    obs, raw = run.buffer.column("observations"), run.buffer.column("raw_observations")
    with torch.no_grad():
        trained_loss, _ = run.algorithm.actor_loss(obs, raw)
        run.algorithm.actor = initial_actor
        initial_loss, _ = run.algorithm.actor_loss(obs, raw)
    assert trained_loss < initial_loss
