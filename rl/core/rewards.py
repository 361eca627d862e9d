"""Reward conventions: documented, explicit options, never applied silently.

The transform is a named field of every run config (``reward_transform``) and is written to
``config.json``; the trainer prints the one it uses. Evaluation always reports the
environment's own, untransformed return.

* ``none``: the dataset's rewards as they are.
* ``minus_one``: r - 1, so the goal gives 0 and every other step -1 (the maze convention of
  seed 002, Table A.2, "-1 except goal", and of SPOT on AntMaze, ALGORITHMS.md "SPOT").
  Where the goal terminates the episode (D4RL's original AntMaze files), every step before it
  costs -1. On a dataset without terminals (the built-in PointMaze recipes re-sample the goal
  instead; Minari's PointMaze and AntMaze datasets are continuing tasks, which never terminate)
  it only shifts every Q by -1/(1 - gamma): the greedy policy is unchanged, but the critic must
  first travel that offset, with time constant 1/(tau (1 - gamma)) updates through polyak
  targets (20,000 for ARQ's tau = 0.005, gamma = 0.99).
* ``return_range``: r * 1000 / (max episode return - min episode return), the locomotion
  normalisation seed 002 (App. A.2) and seed 000 (App. C) take from IQL (Kostrikov et al. 2021).
  The papers state the division only; the factor 1000 is IQL's code's.
* ``auto``: resolved once, before training, from the dataset id and the algorithm: maze ids
  take ``minus_one``; ids under ``mujoco/`` take the algorithm's own locomotion convention
  (``Algorithm.locomotion_reward``: ``return_range`` for ARQ and DASCO, whose papers divide
  rewards by the range; ``none`` for TD3+BC, BEAR and SPOT, which train on raw rewards, and for
  BC); anything else ``none``. The resolved name, not ``auto``, is what the run config records.

The goal-switch convention (``goal_switch``, :mod:`behavior_models.data.goals`) says what the
step after each goal arrival means in a dataset collected with the goal re-sampled on arrival:

* ``keep``: as recorded: the next state carries the new goal, and the reward is against it;
* ``relabel``: as the evaluation (one fixed goal) would have recorded it: the next state keeps
  the goal the step started with, and the evaluation environment's ``compute_reward`` recomputes
  the reward against it, so the data show that staying at the goal pays;
* ``auto``: ``relabel`` on maze ids (gymnasium-robotics PointMaze and AntMaze, D4RL's and the
  built-in recipes), ``keep`` elsewhere. On data without goal switches both views are the same.
"""

from __future__ import annotations

import numpy as np

from behavior_models.data import Transitions
from behavior_models.data.goals import GOAL_SWITCH_VIEWS, goal_switches, relabel_goal_switches
from behavior_models.errors import ConfigError
from rl.core.evaluation import eval_reward_function
from rl.core.tasks import task_family

REWARD_TRANSFORMS = ("none", "minus_one", "return_range")


def resolve_reward_transform(name: str, dataset_id: str, locomotion: str = "return_range") -> str:
    """The concrete transform behind ``name``: ``auto`` is resolved from ``dataset_id``, with
    ``locomotion`` as the transform of MuJoCo locomotion datasets."""
    if name == "auto":
        if task_family(dataset_id) == "antmaze":
            return "minus_one"
        if dataset_id.startswith("mujoco/"):
            return locomotion
        return "none"
    if name not in REWARD_TRANSFORMS:
        raise ConfigError(f"unknown reward_transform {name!r}; choose one of {('auto',) + REWARD_TRANSFORMS}")
    return name


def resolve_goal_switch(name: str, dataset_id: str) -> str:
    """The concrete goal-switch view behind ``name``: ``auto`` is resolved from ``dataset_id``."""
    if name == "auto":
        return "relabel" if task_family(dataset_id) == "antmaze" else "keep"
    if name not in GOAL_SWITCH_VIEWS:
        raise ConfigError(f"unknown goal_switch {name!r}; choose one of {('auto',) + GOAL_SWITCH_VIEWS}")
    return name


def goal_switch_view(transitions: Transitions, name: str) -> Transitions:
    """``transitions`` under the (already resolved) goal-switch view ``name`` (a view already
    taken is returned as it is); the evaluation environment is made, once, for its reward
    function, only when there are switches to relabel."""
    if name not in GOAL_SWITCH_VIEWS:
        raise ConfigError(f"unknown goal_switch {name!r}; resolve 'auto' first, or choose one of {GOAL_SWITCH_VIEWS}")
    if transitions.info.goal_switch == name:
        return transitions
    if name == "keep":
        raise ConfigError(f"these transitions of {transitions.dataset_id} are already relabelled; load the dataset "
                          "again for the recorded ones")
    if not goal_switches(transitions).any():
        return transitions
    return relabel_goal_switches(transitions, eval_reward_function(transitions.dataset_id))


def transform_rewards(transitions: Transitions, name: str) -> np.ndarray:
    """The rewards of ``transitions`` under the (already resolved) transform ``name``."""
    rewards = transitions.rewards.astype(np.float32)
    if name == "none":
        return rewards
    if name == "minus_one":
        return rewards - 1.0
    if name == "return_range":
        returns = transitions.episode_returns()
        spread = float(returns.max() - returns.min())
        if spread <= 0:
            raise ConfigError(f"reward_transform=return_range needs episodes with different returns; all of "
                              f"{transitions.dataset_id}'s episodes return {returns.max():g}. Use 'none'.")
        return (rewards * (1000.0 / spread)).astype(np.float32)
    raise ConfigError(f"unknown reward_transform {name!r}; resolve 'auto' first, or choose one of {REWARD_TRANSFORMS}")
