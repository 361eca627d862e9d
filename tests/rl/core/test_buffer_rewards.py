import numpy as np
import pytest
import torch

from behavior_models.data import NormalizationStats, load_transitions
from behavior_models.errors import ConfigError
from rl.core.buffer import DeviceBuffer
from rl.core.rewards import goal_switch_view, resolve_goal_switch, resolve_reward_transform, transform_rewards
from tests.helpers import write_flat_dataset


@pytest.fixture
def transitions():
    write_flat_dataset("test/flat-v0", episode_lengths=(5, 7, 4), terminated=[True, False, False])
    return load_transitions("test/flat-v0")


def test_batches_are_the_dataset_rows(transitions):
    stats = transitions.state_stats()
    buffer = DeviceBuffer(transitions, transitions.rewards - 1.0, stats)
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(32, generator)
    index = batch.indices.numpy()
    assert index.min() >= 0 and index.max() < len(transitions)
    np.testing.assert_allclose(batch.raw_observations.numpy(), transitions.observations[index])
    np.testing.assert_allclose(batch.observations.numpy(), stats.normalize(transitions.observations[index]), rtol=1e-6)
    np.testing.assert_allclose(batch.next_observations.numpy(),
                               stats.normalize(transitions.next_observations[index]), rtol=1e-6)
    np.testing.assert_allclose(batch.actions.numpy(), transitions.actions[index])
    np.testing.assert_allclose(batch.rewards.numpy(), transitions.rewards[index] - 1.0)
    np.testing.assert_array_equal(batch.dones.numpy(), transitions.terminals[index])
    np.testing.assert_array_equal(batch.next_action_valid.numpy(), transitions.next_action_valid[index])
    np.testing.assert_allclose(batch.next_actions.numpy(), transitions.next_actions[index])
    assert batch.observations.device == buffer.device


def test_sampling_is_reproducible_from_the_generator(transitions):
    buffer = DeviceBuffer(transitions, transitions.rewards, NormalizationStats.identity(transitions.obs_dim))
    a = buffer.sample(16, torch.Generator().manual_seed(3)).indices
    b = buffer.sample(16, torch.Generator().manual_seed(3)).indices
    assert torch.equal(a, b)


def test_reward_transforms(transitions):
    np.testing.assert_allclose(transform_rewards(transitions, "minus_one"), transitions.rewards - 1)
    np.testing.assert_allclose(transform_rewards(transitions, "none"), transitions.rewards)
    returns = transitions.episode_returns()
    scaled = transform_rewards(transitions, "return_range")
    np.testing.assert_allclose(scaled, transitions.rewards * 1000 / (returns.max() - returns.min()), rtol=1e-5)
    assert resolve_reward_transform("auto", "local/pointmaze-umaze-biased-v0") == "minus_one"
    assert resolve_reward_transform("auto", "mujoco/hopper/medium-v0") == "return_range"
    assert resolve_reward_transform("auto", "D4RL/kitchen/mixed-v2") == "none"
    with pytest.raises(ConfigError, match="reward_transform"):
        resolve_reward_transform("r-1", "x")


def test_goal_switch_views_resolve_from_the_dataset_id(transitions):
    assert resolve_goal_switch("auto", "local/pointmaze-umaze-biased-v0") == "relabel"
    assert resolve_goal_switch("auto", "D4RL/antmaze/large-diverse-v1") == "relabel"
    assert resolve_goal_switch("auto", "D4RL/kitchen/mixed-v2") == "keep"
    assert resolve_goal_switch("keep", "local/pointmaze-umaze-biased-v0") == "keep"
    with pytest.raises(ConfigError, match="goal_switch"):
        resolve_goal_switch("fixed", "x")
    assert goal_switch_view(transitions, "relabel") is transitions  # no goals, nothing to relabel




def test_minibatches_are_uniform_over_every_row(transitions):
    # 16 rows, 32,000 draws: each row expects 2,000 (std 43); a sampler confined to part of the data,
    # or favouring some rows, fails the chi-square bound (99.9th percentile of chi2(15): 37.7).
    buffer = DeviceBuffer(transitions, transitions.rewards, transitions.state_stats())
    generator = torch.Generator().manual_seed(0)
    counts = np.bincount(np.concatenate([buffer.sample(256, generator).indices.numpy() for _ in range(125)]),
                         minlength=len(transitions))
    expected = 32_000 / len(transitions)
    assert len(counts) == len(transitions) and ((counts - expected) ** 2 / expected).sum() < 37.7

@pytest.mark.parametrize("algorithm, expected", [
    ("arq", "return_range"), ("dasco", "return_range"),  # their papers scale locomotion rewards
    ("td3bc", "none"), ("td3bc++", "none"), ("bear", "none"), ("bear++", "none"), ("spot", "none"), ("bc", "none"),
])
def test_auto_reward_on_locomotion_follows_each_algorithms_paper(algorithm, expected):
    from rl.algos import algorithm_class

    locomotion = algorithm_class(algorithm).locomotion_reward
    assert resolve_reward_transform("auto", "mujoco/hopper/medium-v0", locomotion) == expected
    assert resolve_reward_transform("auto", "local/pointmaze-umaze-biased-v0", locomotion) == "minus_one"
