"""Policy rollouts in the evaluation environment Minari recovers, and normalised scores.

The environment is ``minari.load_dataset(id).recover_environment(eval_env=True)``: the one
the dataset declares for evaluation (or its collection env). Its maze can differ from the
data's in more than the goal: Minari's D4RL AntMaze U-mazes are evaluated in the mirror image of
the maze their data covers (its generation script's eval map, D4RL's ``antmaze-eval-*`` layout;
Minari issue #304), where D4RL-era papers evaluated in the data's own maze.
:func:`maze_layout_note` says so when it applies, and ``maze="data"`` evaluates in the data's
maze. Observations are flattened exactly as the dataset loader flattens them
(:func:`behavior_models.data.minari_io.flatten_observations`), so a policy sees the same layout
in training and in the environment.

Several episodes run side by side (``parallel`` environments), so the policy is called once
per time step on a batch, not once per episode step.

Normalised score (ALGORITHMS.md, "Conventions"): 100 * (R - ref_min) / (ref_max - ref_min),
from the dataset's reference scores; without them the raw return is reported and labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from behavior_models.data import DatasetInfo
from behavior_models.data.minari_io import flatten_observations
from behavior_models.errors import ConfigError, DatasetError

Policy = Callable[[np.ndarray], np.ndarray]  # [n, S] flat observations -> [n, A] actions


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray  # [episodes] undiscounted env returns
    scores: np.ndarray  # [episodes] normalised scores, or the raw returns when there are no references
    score_kind: str  # "normalized" or "raw_return"
    lengths: np.ndarray  # [episodes]
    # (ref_min, ref_max) the scores were normalised with, recorded beside them: a dataset rebuilt
    # with other reference episodes keeps its content fingerprint but not its score scale.
    reference_scores: tuple[float, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "normalized_score_mean": float(self.scores.mean()),
            "normalized_score_std": float(self.scores.std()),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "episode_length_mean": float(self.lengths.mean()),
            "episodes": int(len(self.returns)),
            "score_kind": self.score_kind,
            "reference_scores": list(self.reference_scores) if self.reference_scores else None,
        }


# Which maze a policy is evaluated in: the evaluation env's own, or (the same env otherwise) the
# maze the data was collected in.
EVAL_MAZES = ("evaluation", "data")


def make_eval_env_factory(dataset_id: str, maze: str = "evaluation") -> Callable[[], Any]:
    """A function returning a fresh evaluation env of ``dataset_id`` each call; with
    ``maze="data"``, that env with the ``maze_map`` of the env its data was collected in, and
    everything else (time limit, fixed goal, reward) the evaluation's."""
    import copy

    import gymnasium as gym
    import minari

    if maze not in EVAL_MAZES:
        raise ConfigError(f"unknown evaluation maze {maze!r}; choose one of {EVAL_MAZES}")
    dataset = minari.load_dataset(dataset_id)
    eval_spec = stored_eval_env_spec(dataset)
    if dataset.spec.env_spec is None and eval_spec is None:
        raise DatasetError(f"dataset {dataset_id} stores no environment spec, so it cannot be evaluated in an "
                           "environment; rebuild it with an env (write_minari_dataset(..., env=...)) or train "
                           "with --eval-episodes 0")
    if str(getattr(dataset.spec.env_spec, "entry_point", "")).startswith("gymnasium_robotics"):
        from rl.datasets.pointmaze import import_gymnasium_robotics

        import_gymnasium_robotics()  # now and quietly: recover_environment's gym.make would print its notice
    # Gymnasium's passive env checker is for the authors of an environment: evaluating in one, it
    # only prints warnings, such as FrankaKitchen's about the one observation object it returns
    # from every step, updated in place (the rollout flattens, so copies, each observation first).
    if maze == "evaluation":
        return lambda: dataset.recover_environment(eval_env=True, disable_env_checker=True)
    data_map = None if dataset.spec.env_spec is None else dataset.spec.env_spec.kwargs.get("maze_map")
    if data_map is None:
        raise DatasetError(f"dataset {dataset_id} was not collected in a maze (its env spec has no maze_map), so it "
                           "has no data maze to evaluate in; drop --eval-maze data")
    spec = copy.deepcopy(eval_spec or dataset.spec.env_spec)
    spec.kwargs["maze_map"] = data_map
    return lambda: gym.make(spec, disable_env_checker=True)


def stored_eval_env_spec(dataset: Any) -> Any:
    """The evaluation env spec a Minari dataset stores (a gymnasium EnvSpec), or None.

    Read as Minari reads it: specs written under older gymnasium versions carry fields this
    gymnasium's EnvSpec no longer has (``apply_api_compatibility``, ``autoreset``), which are
    dropped rather than refused."""
    import dataclasses
    import json

    from gymnasium.envs.registration import EnvSpec

    spec = dataset.storage.metadata.get("eval_env_spec")
    if not isinstance(spec, str):
        return spec
    known = {field.name for field in dataclasses.fields(EnvSpec)}
    return EnvSpec.from_json(json.dumps({key: value for key, value in json.loads(spec).items() if key in known}))


def maze_layout_note(dataset_id: str) -> str | None:
    """A note for the user if ``dataset_id``'s evaluation env is a maze whose walls differ from
    those of the maze its data was collected in (a different start and goal are the task, walls
    are not), else None."""
    import minari

    dataset = minari.load_dataset(dataset_id)
    eval_spec = stored_eval_env_spec(dataset)
    if dataset.spec.env_spec is None or eval_spec is None:
        return None
    data_map, eval_map = (spec.kwargs.get("maze_map") for spec in (dataset.spec.env_spec, eval_spec))
    if data_map is None or eval_map is None:
        return None
    walls = [[[cell == 1 for cell in row] for row in maze] for maze in (data_map, eval_map)]
    if walls[0] == walls[1]:
        return None
    return (f"{dataset_id}'s evaluation environment is a maze with other walls than the one its data was collected "
            "in (for Minari's AntMaze U-mazes, its mirror image: Minari issue #304), so scores measure a maze the "
            "data never shows; D4RL-era papers evaluated in the data's maze. Pass --eval-maze data to evaluate "
            "there (the reference scores stay the dataset's)")


def eval_reward_function(dataset_id: str) -> Callable[[np.ndarray, np.ndarray, Any], np.ndarray]:
    """The evaluation environment's own ``compute_reward(achieved_goal, desired_goal, info)``
    (a gymnasium-robotics goal env's, batched over rows), for relabelling goal switches
    (:mod:`behavior_models.data.goals`) with exactly the reward the evaluation pays."""
    try:
        env = make_eval_env_factory(dataset_id)()
    except DatasetError as error:
        raise DatasetError(f"{dataset_id}'s goal switches are relabelled with its evaluation environment's reward, "
                           f"and it has none ({error}); train with --set goal_switch=keep") from None
    try:
        compute_reward = getattr(env.unwrapped, "compute_reward", None)
    finally:
        env.close()
    if compute_reward is None:
        raise DatasetError(f"the evaluation environment of {dataset_id} has no compute_reward, so its goal switches "
                           "cannot be relabelled; train with --set goal_switch=keep")
    return compute_reward


def flatten_batch(observations: list[Any]) -> np.ndarray:
    """Stack single-step observations (arrays or nested dicts) and flatten them to [n, S]."""
    return flatten_observations(_stack(observations))[0]


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], dict):
        return {key: _stack([item[key] for item in items]) for key in items[0]}
    return np.stack([np.asarray(item, np.float32) for item in items])


def rollout(policy: Policy, env_factory: Callable[[], Any], episodes: int, seed: int, parallel: int = 10,
            max_steps: int | None = None,
            on_step: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` episodes; episode i is reset with seed ``seed + i``.

    ``max_steps`` caps episodes of environments without a time limit. ``on_step(i, reward)``, if
    given, sees every step's reward of episode i in order (for statistics beyond the return).
    """
    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    envs = [env_factory() for _ in range(min(parallel, episodes))]
    try:
        low, high = envs[0].action_space.low, envs[0].action_space.high
        for first in range(0, episodes, len(envs)):
            wave = list(range(first, min(first + len(envs), episodes)))
            observations = {i: envs[k].reset(seed=seed + i)[0] for k, i in enumerate(wave)}
            env_of = {i: envs[k] for k, i in enumerate(wave)}
            active = list(wave)
            while active:
                actions = np.clip(policy(flatten_batch([observations[i] for i in active])), low, high)
                still = []
                for i, action in zip(active, actions):
                    obs, reward, terminated, truncated, _ = env_of[i].step(action)
                    returns[i] += float(reward)
                    lengths[i] += 1
                    if on_step is not None:
                        on_step(i, float(reward))
                    observations[i] = obs
                    if not (terminated or truncated or (max_steps is not None and lengths[i] >= max_steps)):
                        still.append(i)
                active = still
    finally:
        for env in envs:
            env.close()
    return returns, lengths


def score(returns: np.ndarray, lengths: np.ndarray, info: DatasetInfo) -> EvalResult:
    if info.has_reference_scores:
        references = (float(info.ref_min_score), float(info.ref_max_score))
        return EvalResult(returns, info.normalized_score(returns), "normalized", lengths, references)
    return EvalResult(returns, returns.copy(), "raw_return", lengths)


def evaluate(policy: Policy, dataset_id: str, info: DatasetInfo, episodes: int, seed: int, parallel: int = 10,
             max_steps: int | None = None, env_factory: Callable[[], Any] | None = None,
             maze: str = "evaluation") -> EvalResult:
    """Roll ``policy`` out for ``episodes`` episodes in the evaluation env (in ``maze``, one of
    :data:`EVAL_MAZES`) and score them against ``info``'s references."""
    factory = env_factory or make_eval_env_factory(dataset_id, maze)
    returns, lengths = rollout(policy, factory, episodes, seed, parallel, max_steps)
    return score(returns, lengths, info)
