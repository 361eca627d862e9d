import numpy as np
import pytest

from behavior_models.data import load_transitions
from behavior_models.data.goals import goal_columns, goal_switches, relabel_goal_switches
from behavior_models.errors import DatasetError
from tests.helpers import sparse_goal_reward as sparse_reward
from tests.helpers import write_flat_dataset, write_goal_switch_dataset


def test_goal_columns_follow_the_flattened_layout():
    data, _, _ = write_goal_switch_dataset()
    assert data.info.observation_sizes == (4, 2, 2)
    assert goal_columns(data) == (slice(4, 6), slice(6, 8))
    write_flat_dataset("test/flat-v0", episode_lengths=(4,))
    flat = load_transitions("test/flat-v0")
    assert goal_columns(flat) is None and not goal_switches(flat).any()
    assert relabel_goal_switches(flat, sparse_reward) is flat


def test_a_goal_switch_is_relabelled_to_the_goal_its_step_started_with():
    data, g1, g2 = write_goal_switch_dataset()
    np.testing.assert_array_equal(goal_switches(data), [False, False, True, False, False, False])
    assert data.rewards[2] == 0.0  # the ball stays at g1, but the step was paid against g2

    view = relabel_goal_switches(data, sparse_reward)
    np.testing.assert_array_equal(view.next_observations[2, 6:8], g1)
    np.testing.assert_array_equal(view.next_observations[2, :6], data.next_observations[2, :6])
    assert view.rewards[2] == 1.0  # |(1.1, 1.0) - (1, 1)| = 0.1: at g1, as the evaluation would pay
    others = np.arange(len(data)) != 2
    np.testing.assert_array_equal(view.next_observations[others], data.next_observations[others])
    np.testing.assert_array_equal(view.rewards[others], data.rewards[others])
    np.testing.assert_array_equal(view.observations, data.observations)
    np.testing.assert_array_equal(view.actions, data.actions)
    # a_{t+1} was chosen for g2, so it is no successor of the relabelled state
    np.testing.assert_array_equal(view.next_action_valid, data.next_action_valid & others)
    np.testing.assert_array_equal(view.next_actions[2], [0.0, 0.0])
    assert view.fingerprint == data.fingerprint  # states and actions are the dataset's: fitted models fit it
    assert (view.info.goal_switch, data.info.goal_switch) == ("relabel", "keep")
    assert not goal_switches(view).any()
    with pytest.raises(DatasetError, match="already"):
        relabel_goal_switches(view, sparse_reward)


def test_a_reward_function_that_does_not_take_batches_is_refused():
    data, _, _ = write_goal_switch_dataset()
    with pytest.raises(DatasetError, match="batches"):
        relabel_goal_switches(data, lambda achieved, desired, info: 1.0)

