"""Goal switches in goal-conditioned datasets, and the view of them an evaluation with a fixed goal implies.

D4RL's maze2d data, Minari's PointMaze datasets and this library's PointMaze recipes are
collected with the goal re-sampled on arrival (gymnasium-robotics ``continuing_task=True,
reset_target=True``). The environment computes the arrival step's observation and reward
against the old goal g, then draws a new goal g'. So each arrival leaves one *goal switch* in
the data (Minari's AntMaze datasets keep their one goal, ``reset_target=False``, and have none;
both views below are the same there):

    s_t = (ball at g, desired_goal g)  --a_t-->  s_{t+1} = (ball still at g, desired_goal g'),  r_t vs g'

Its reward is almost always 0 (the ball is seldom at g' too), and its next state carries
another task. The evaluation environment keeps g (``reset_target=False``) and pays 1 for every
step at it, so what that step means there is the opposite: staying at the goal is worth 1 per
step, forever. A critic trained on the recorded switch learns that being at one's goal is worth
no more than a fresh, random goal; nothing in the data says it pays to stay.

``relabel_goal_switches`` gives the transitions as the evaluation would have produced them: at
every switch, s_{t+1}'s desired goal is set back to g and r_t is recomputed against g by the
environment's own reward function (``compute_reward`` of a gymnasium-robotics goal env). The ball's
motion does not depend on the goal, so the relabelled transition is one the evaluation MDP can
produce. D4RL's own maze2d and AntMaze files go further the same way: their rewards are computed
against the one evaluation goal, so a stay at it shows as a run of 1s. The recorded next action
a_{t+1} was chosen for g', so it is marked invalid there.

The view keeps the dataset's fingerprint (a behaviour model fitted on the recorded data fits it:
states and actions are unchanged) and records itself in ``info.goal_switch``; a sample cache,
whose rows include the relabelled next states, records the same and is matched on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from behavior_models.data.transitions import Transitions
from behavior_models.errors import DatasetError

GOAL_SWITCH_VIEWS = ("keep", "relabel")
RewardFunction = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]  # (achieved, desired, info) -> [n]


def goal_columns(transitions: Transitions) -> tuple[slice, slice] | None:
    """The columns of ``achieved_goal`` and ``desired_goal`` in the flat observations, or None
    when the observations have no such top-level arrays (flat observations, Kitchen's dict goals)."""
    info = transitions.info
    if len(info.observation_sizes) != len(info.observation_keys):
        return None
    starts = np.concatenate([[0], np.cumsum(info.observation_sizes)]).astype(int)
    columns = {key: slice(starts[i], starts[i + 1]) for i, key in enumerate(info.observation_keys)}
    achieved, desired = columns.get("achieved_goal"), columns.get("desired_goal")
    if achieved is None or desired is None:
        return None
    return achieved, desired


def goal_switches(transitions: Transitions) -> np.ndarray:
    """[N] bool: the transitions whose next observation carries another desired goal than their
    observation (all False when the observations have no goal arrays)."""
    columns = goal_columns(transitions)
    if columns is None:
        return np.zeros(len(transitions), bool)
    desired = columns[1]
    return np.any(transitions.observations[:, desired] != transitions.next_observations[:, desired], axis=1)


def relabel_goal_switches(transitions: Transitions, compute_reward: RewardFunction) -> Transitions:
    """The transitions with every goal switch relabelled to the goal its step started with (see
    the module docstring); ``compute_reward(achieved_goal, desired_goal, None)`` is the evaluation
    environment's reward, batched over rows. ``info.goal_switch`` says "relabel" only when some
    transition changed, so a dataset without switches has one view."""
    if transitions.info.goal_switch != "keep":
        raise DatasetError(f"{transitions.dataset_id}: these transitions are already the "
                           f"{transitions.info.goal_switch!r} view; relabel the recorded ones")
    rows = goal_switches(transitions)
    if not rows.any():
        return transitions
    achieved, desired = goal_columns(transitions)
    next_observations = transitions.next_observations.copy()
    next_observations[rows, desired] = transitions.observations[rows, desired]
    rewards = transitions.rewards.copy()
    recomputed = np.asarray(compute_reward(next_observations[rows, achieved], next_observations[rows, desired], None))
    if recomputed.shape != (int(rows.sum()),) or not np.all(np.isfinite(recomputed)):
        raise DatasetError(f"{transitions.dataset_id}: the environment's compute_reward returned "
                           f"{recomputed.shape} values for {int(rows.sum())} goal switches; it must take batches")
    rewards[rows] = recomputed
    next_action_valid = transitions.next_action_valid & ~rows
    next_actions = np.where(next_action_valid[:, None], transitions.next_actions, 0.0).astype(np.float32)
    info = dataclasses.replace(transitions.info, goal_switch="relabel")
    return dataclasses.replace(transitions, next_observations=next_observations, rewards=rewards,
                               next_actions=next_actions, next_action_valid=next_action_valid, info=info,
                               fingerprint=transitions.fingerprint)
