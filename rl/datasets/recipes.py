"""The built-in dataset recipes: PointMaze expert / noisy / biased / random, and contamination.

Names (the one alias table is :mod:`behavior_models.data.aliases`; ids are ``local/<name>-v0``):

* ``pointmaze-{umaze,medium,large}-expert``: the waypoint planner (:mod:`rl.datasets.pointmaze`);
* ``pointmaze-*-noisy`` / ``pointmaze-*-biased``: the planner perturbed per x-bucket as in
  DASCO's Listing 1 (:mod:`rl.datasets.perturbation`), noise only / noise and bias;
* ``pointmaze-*-random``: uniform random actions in [-1, 1]^2;
* ``pointmaze-*-expert-random-{10,30,50,70}``: the expert dataset with its final X% of
  transitions replaced by the first ones of the random dataset (:mod:`rl.datasets.contamination`).

Every dataset stores the data-collection env spec and the evaluation env spec (so
``recover_environment(eval_env=True)`` needs no extra arguments), ``ref_min_score`` (uniform
random policy) and ``ref_max_score`` (the planner), both measured on the evaluation env, and
its recipe config with measured statistics under the metadata key ``recipe``.

Determinism: every random stream (data-env resets, the policy's noise, evaluation resets,
the random reference policy) is spawned from ``numpy.random.SeedSequence(seed)``, and MuJoCo
is deterministic, so a seed gives the same arrays (the same fingerprint) every time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from behavior_models import __version__
from behavior_models.data import recipe_for
from behavior_models.data.aliases import ALIASES, CONTAMINATION_PERCENTS, POINTMAZE_MAZES, POINTMAZE_POLICIES, suggest
from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetNotFoundError, require_at_least
from behavior_models.io import config_to_dict, dict_changes
from rl.datasets.contamination import contaminate
from rl.datasets.perturbation import XBucketPerturbation
from rl.datasets.pointmaze import (
    EVAL_EPISODE_STEPS, PlannerConfig, WaypointPlanner, data_env_spec, eval_env_spec, make_env, maze_of,
)
from rl.datasets.rollout import collect_episodes, evaluate
from rl.datasets.storage import RECIPE_METADATA_KEY, read_episodes, write_dataset_atomically


@dataclass(frozen=True)
class PointMazeRecipe:
    """Everything that determines a recipe dataset. Saved in the dataset's metadata.

    ``episodes`` x ``episode_steps`` is the dataset size (the data env never terminates:
    the goal is re-sampled on arrival, and each episode is truncated at ``episode_steps``).
    ``reference_episodes`` evaluation episodes measure each reference score.
    ``contamination`` = X makes the expert-random-X dataset of the expert and random recipes
    with the same other fields (``policy`` must then be ``expert``).
    """

    maze: str
    policy: str
    seed: int = 0
    episodes: int = 100
    episode_steps: int = 1000
    reference_episodes: int = 50
    p_gain: float = PlannerConfig.p_gain
    d_gain: float = PlannerConfig.d_gain
    contamination: int | None = None

    def __post_init__(self) -> None:
        if self.maze not in POINTMAZE_MAZES:
            raise ConfigError(f"maze must be one of {POINTMAZE_MAZES}, got {self.maze!r}")
        if self.policy not in POINTMAZE_POLICIES:
            raise ConfigError(f"policy must be one of {tuple(POINTMAZE_POLICIES)}, got {self.policy!r}")
        if self.contamination is not None and (self.policy != "expert" or not 0 < self.contamination < 100):
            raise ConfigError("contamination X needs policy 'expert' and 0 < X < 100")
        require_at_least(self, {"seed": 0, **dict.fromkeys(("episodes", "episode_steps", "reference_episodes"), 1)})

    @property
    def name(self) -> str:
        base = f"pointmaze-{self.maze}-{self.policy}"
        return base if self.contamination is None else f"{base}-random-{self.contamination}"

    @property
    def planner(self) -> PlannerConfig:
        return PlannerConfig(self.p_gain, self.d_gain)


def parse_recipe_name(name: str) -> PointMazeRecipe:
    """The recipe (with default sizes) behind a short name or its ``local/...`` id."""
    entry = recipe_for(name)
    if entry is None:
        stock = next((e for e in ALIASES.values() if name.strip() in (e.name, e.dataset_id)), None)
        if stock is not None:  # a dataset to download, not a mistyped recipe
            raise DatasetNotFoundError(
                f"{name!r} is the stock Minari dataset {stock.dataset_id}, which `bm datasets make` does not build "
                f"(it builds the recipes `bm datasets` lists): get it with `minari download {stock.dataset_id}` "
                "on a machine with network access.")
        close = suggest(name, kind="recipe")
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DatasetNotFoundError(f"{name!r} is not a built-in recipe.{hint} `bm datasets` lists the recipes.")
    parts = entry.name.split("-")  # pointmaze-<maze>-<policy>[-random-<X>]
    if len(parts) == 3:
        return PointMazeRecipe(maze=parts[1], policy=parts[2])
    if len(parts) == 5 and parts[2] == "expert" and parts[3] == "random":
        return PointMazeRecipe(maze=parts[1], policy="expert", contamination=int(parts[4]))
    raise ConfigError(f"recipe alias {entry.name!r} has no builder in rl.datasets")  # table and code disagree


def _seeds(seed: int) -> dict[str, Any]:
    data_env, policy, eval_env, eval_policy = np.random.SeedSequence(seed).spawn(4)
    return {
        "data_env": int(data_env.generate_state(1)[0]),
        "policy": np.random.default_rng(policy),
        "eval_env": int(eval_env.generate_state(1)[0]),
        "eval_policy": np.random.default_rng(eval_policy),
    }


def behaviour_policy(policy: str, env, rng: np.random.Generator, planner: PlannerConfig = PlannerConfig()):
    """The function obs -> action that a recipe's data comes from."""
    if policy == "random":
        low, high = env.action_space.low, env.action_space.high
        return lambda obs: rng.uniform(low, high)
    expert = WaypointPlanner(maze_of(env), planner)
    if policy == "expert":
        return expert.act
    perturb = XBucketPerturbation.for_maze(maze_of(env).maze_map, with_bias=policy == "biased")
    return lambda obs: perturb(expert.act(obs), float(obs["observation"][0]), rng)


def planner_actions(dataset_id: str, raw_obs: np.ndarray) -> np.ndarray | None:
    """The waypoint planner's action at each flat observation [n, 8] of a built-in PointMaze recipe
    (``observation``, ``achieved_goal``, ``desired_goal``, flattened in that order), or None for
    any other dataset: the noise-free expert whose actions the noisy and biased recipes perturb,
    for diagnostics that compare a policy with it."""
    if recipe_for(dataset_id) is None or raw_obs.shape[1] != 8:
        return None
    recipe = parse_recipe_name(dataset_id)
    env = make_env(eval_env_spec(recipe.maze))
    planner = WaypointPlanner(maze_of(env), recipe.planner)
    env.close()
    return np.stack([planner.act({"observation": row[:4], "desired_goal": row[6:8]}) for row in raw_obs])

def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress, dynamic_ncols=True, mininterval=0.5)


_REFERENCE_SCORES: dict[tuple, dict[str, float]] = {}  # in-process memo: recipes of one maze share them


def reference_scores(maze: str, seed: int, episodes: int, planner: PlannerConfig = PlannerConfig(),
                     progress: bool = False) -> dict[str, float]:
    """ref_min_score (uniform random policy) and ref_max_score (the planner) on the eval env.

    Both policies face the same ``episodes`` start/goal pairs (the eval env is reseeded
    identically for each). Also returns each policy's success rate.
    """
    key = (maze, seed, episodes, planner)
    if key not in _REFERENCE_SCORES:
        _REFERENCE_SCORES[key] = _measure_reference_scores(maze, seed, episodes, planner, progress)
    return dict(_REFERENCE_SCORES[key])


def _measure_reference_scores(maze: str, seed: int, episodes: int, planner: PlannerConfig,
                              progress: bool) -> dict[str, float]:
    seeds = _seeds(seed)
    env = make_env(eval_env_spec(maze))
    with _bar(2 * episodes * EVAL_EPISODE_STEPS[maze], f"pointmaze-{maze}: reference scores", progress) as bar:
        expert = evaluate(env, behaviour_policy("expert", env, seeds["eval_policy"], planner), episodes,
                          env_seed=seeds["eval_env"], progress=bar)
        random = evaluate(env, behaviour_policy("random", env, seeds["eval_policy"]), episodes,
                          env_seed=seeds["eval_env"], progress=bar)
    env.close()
    return {
        "ref_min_score": random.mean_return, "ref_max_score": expert.mean_return,
        "random_success_rate": random.success_rate, "planner_success_rate": expert.success_rate,
    }


def boundary_fraction(episodes: list[dict[str, Any]]) -> float:
    """Fraction of action entries exactly on the box boundary (|a| = 1)."""
    actions = np.concatenate([np.asarray(e["actions"]) for e in episodes])
    return float(np.mean(np.abs(actions) >= 1.0))


def _build_pointmaze(recipe: PointMazeRecipe, progress: bool, overwrite: bool) -> str:
    start = time.perf_counter()
    seeds = _seeds(recipe.seed)
    spec = data_env_spec(recipe.maze, recipe.episode_steps)
    env = make_env(spec)
    policy = behaviour_policy(recipe.policy, env, seeds["policy"], recipe.planner)
    with _bar(recipe.episodes * recipe.episode_steps, f"{recipe.name}: collecting", progress) as bar:
        episodes = collect_episodes(env, policy, recipe.episodes, env_seed=seeds["data_env"], progress=bar)
    env.close()
    scores = reference_scores(recipe.maze, recipe.seed, recipe.reference_episodes, recipe.planner, progress)
    metadata = {
        "config": config_to_dict(recipe),
        "library_version": __version__,
        "goals_reached": float(sum(np.sum(e["rewards"]) for e in episodes)),
        "action_boundary_fraction": boundary_fraction(episodes),
        **{key: scores[key] for key in ("planner_success_rate", "random_success_rate")},
    }
    metadata["generation_seconds"] = round(time.perf_counter() - start, 2)
    return write_dataset_atomically(
        recipe_dataset_id(recipe), episodes, env=spec, eval_env=eval_env_spec(recipe.maze),
        ref_min_score=scores["ref_min_score"], ref_max_score=scores["ref_max_score"], metadata=metadata,
        description=f"{recipe.name}: {POINTMAZE_POLICIES[recipe.policy]}; built by rl.datasets", overwrite=overwrite,
    )


def _build_contaminated(recipe: PointMazeRecipe, progress: bool, overwrite: bool) -> str:
    import minari

    from behavior_models.data import load_transitions

    start = time.perf_counter()
    sources = {policy: replace(recipe, policy=policy, contamination=None) for policy in ("expert", "random")}
    ids = {policy: _make(source, progress=progress, overwrite=False) for policy, source in sources.items()}
    expert, random = minari.load_dataset(ids["expert"]), minari.load_dataset(ids["random"])
    episodes, counts = contaminate(read_episodes(expert), read_episodes(random), recipe.contamination)
    expert_meta = expert.storage.metadata
    metadata = {
        "config": config_to_dict(recipe),
        "library_version": __version__,
        "sources": {policy: {"dataset_id": ids[policy], "fingerprint": load_transitions(ids[policy]).fingerprint}
                    for policy in ids},
        "counts": config_to_dict(counts),
        "action_boundary_fraction": boundary_fraction(episodes),
    }
    metadata["generation_seconds"] = round(time.perf_counter() - start, 2)
    return write_dataset_atomically(
        recipe_dataset_id(recipe), episodes, env=data_env_spec(recipe.maze, recipe.episode_steps),
        eval_env=eval_env_spec(recipe.maze), ref_min_score=expert_meta["ref_min_score"],
        ref_max_score=expert_meta["ref_max_score"], metadata=metadata,
        description=(f"{recipe.name}: the final {recipe.contamination}% of {ids['expert']} replaced by the first "
                     f"transitions of {ids['random']} (seed 001, App. A); built by rl.datasets"),
        overwrite=overwrite,
    )


def recipe_dataset_id(recipe: PointMazeRecipe) -> str:
    return recipe_for(recipe.name).dataset_id


def _make(recipe: PointMazeRecipe, *, progress: bool, overwrite: bool) -> str:
    """Build ``recipe`` unless a dataset built from the very same recipe is already on disk."""
    from behavior_models.data import is_local
    from behavior_models.data.minari_io import dataset_path

    dataset_id = recipe_dataset_id(recipe)
    if is_local(dataset_id) and not overwrite:
        import minari

        stored = minari.load_dataset(dataset_id).storage.metadata.get(RECIPE_METADATA_KEY) or {}
        changes = dict_changes(stored.get("config") or {}, config_to_dict(recipe))
        if changes:
            raise ArtefactMismatchError(
                f"{dataset_id} is on disk but was built from another recipe (on disk -> asked: {'; '.join(changes)}). "
                f"Rebuild it with `bm datasets make {recipe.name} --force` (with the options you want), or ask for "
                "the options it was built with."
            )
        return dataset_id
    if dataset_path(dataset_id).exists() and not overwrite:  # checked before minutes of generation, not after
        raise ArtefactMismatchError(
            f"{dataset_path(dataset_id)} exists but holds no readable dataset (an interrupted build, or a folder "
            f"left by hand). Rebuild it with `bm datasets make {recipe.name} --force`, or delete that folder.")
    build = _build_pointmaze if recipe.contamination is None else _build_contaminated
    return build(recipe, progress, overwrite)


def make_dataset(name: str, *, seed: int = 0, episodes: int | None = None, progress: bool = True,
                 overwrite: bool = False, episode_steps: int | None = None,
                 reference_episodes: int | None = None) -> str:
    """Build the built-in recipe ``name`` (short name or ``local/...`` id); returns its Minari id.

    If a dataset built from the same recipe is already on disk it is kept (nothing is
    regenerated); one built from a different recipe (another seed or size) is refused unless
    ``overwrite``. A contamination recipe builds its expert and random sources first when they
    are missing, with the same seed and sizes.
    """
    recipe = parse_recipe_name(name)
    changes = {"seed": int(seed), "episodes": episodes, "episode_steps": episode_steps,
               "reference_episodes": reference_episodes}
    recipe = replace(recipe, **{k: v for k, v in changes.items() if v is not None})
    return _make(recipe, progress=progress, overwrite=overwrite)
