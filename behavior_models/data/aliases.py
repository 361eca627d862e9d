"""The one table of dataset names researchers type, and what they resolve to.

Two kinds of entry:

* ``minari``: a stock Minari dataset, e.g. ``kitchen-mixed`` -> ``D4RL/kitchen/mixed-v2``.
  It must be on disk already (``minari download ID`` on a machine with network).
* ``recipe``: a dataset this library builds from a real environment with a scripted
  expert (``bm datasets make NAME``), stored under the ``local/`` namespace. The recipes
  themselves live in :mod:`rl.datasets` (they need environments); this module only
  names them, so that :mod:`behavior_models` never imports :mod:`rl`.

Resolution order: an exact alias first, then any string taken as a Minari id verbatim.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetAlias:
    name: str
    dataset_id: str
    kind: str  # "minari" or "recipe"
    description: str


RECIPE_NAMESPACE = "local"
POINTMAZE_MAZES = ("umaze", "medium", "large")
POINTMAZE_POLICIES = {
    "expert": "waypoint planner + PD controller (D4RL maze2d style)",
    "noisy": "planner + x-bucketed Gaussian noise (DASCO seed 000, App. B)",
    "biased": "planner + x-bucketed noise and bias (DASCO seed 000, App. B)",
    "random": "uniform random actions",
}
CONTAMINATION_PERCENTS = (10, 30, 50, 70)
DEFAULT_DATASET = "pointmaze-umaze-biased"
# Gymnasium MuJoCo tasks whose action box is not [-1, 1] (Humanoid 0.4, InvertedPendulum 3, Pusher 2).
NON_UNIT_ACTION_BOX = frozenset({"humanoid", "invertedpendulum", "pusher"})


def recipe_dataset_id(name: str) -> str:
    return f"{RECIPE_NAMESPACE}/{name}-v0"


def _build_table() -> dict[str, DatasetAlias]:
    entries: list[DatasetAlias] = []

    def minari(name: str, dataset_id: str, description: str) -> None:
        entries.append(DatasetAlias(name, dataset_id, "minari", description))

    for task in ("complete", "partial", "mixed"):
        minari(f"kitchen-{task}", f"D4RL/kitchen/{task}-v2", f"FrankaKitchen-v1, D4RL {task}")
    for maze in ("open", "umaze", "medium", "large"):
        minari(f"pointmaze-{maze}", f"D4RL/pointmaze/{maze}-v2", f"PointMaze {maze}, sparse reward")
        minari(f"pointmaze-{maze}-dense", f"D4RL/pointmaze/{maze}-dense-v2", f"PointMaze {maze}, dense reward")
    for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"):
        minari(f"antmaze-{maze}", f"D4RL/antmaze/{maze}-v1", f"AntMaze {maze}")
    for task in ("pen", "door", "hammer", "relocate"):
        for quality in ("human", "cloned", "expert"):
            minari(f"{task}-{quality}", f"D4RL/{task}/{quality}-v2", f"Adroit {task}, {quality} demonstrations")
    # What the Minari remote holds under mujoco/: the last five envs have no "simple" dataset.
    for envs, qualities in (
        (("halfcheetah", "hopper", "walker2d", "ant", "humanoid"), ("simple", "medium", "expert")),
        (("swimmer", "reacher", "pusher", "invertedpendulum", "inverteddoublependulum"), ("medium", "expert")),
    ):
        for env in envs:
            for quality in qualities:
                # Listed, since they are Minari's; refused on load (Transitions.require_unit_action_box).
                box = " (action box not [-1, 1]: refused)" if env in NON_UNIT_ACTION_BOX else ""
                minari(f"{env}-{quality}", f"mujoco/{env}/{quality}-v0", f"MuJoCo {env}, {quality} policy{box}")

    for maze in POINTMAZE_MAZES:
        for policy, description in POINTMAZE_POLICIES.items():
            name = f"pointmaze-{maze}-{policy}"
            entries.append(DatasetAlias(name, recipe_dataset_id(name), "recipe", f"PointMaze {maze}: {description}"))
        for percent in CONTAMINATION_PERCENTS:
            name = f"pointmaze-{maze}-expert-random-{percent}"
            description = f"PointMaze {maze}: last {percent}% of expert replaced by random (seed 001, App. A)"
            entries.append(DatasetAlias(name, recipe_dataset_id(name), "recipe", description))

    table = {entry.name: entry for entry in entries}
    assert len(table) == len(entries), "duplicate alias"
    return table


ALIASES: dict[str, DatasetAlias] = _build_table()


def resolve_dataset_id(name: str) -> str:
    """The Minari id behind ``name``: an alias's target, otherwise ``name`` itself."""
    name = name.strip()
    if name in ALIASES:
        return ALIASES[name].dataset_id
    return name


def recipe_for(name: str) -> DatasetAlias | None:
    """The recipe entry behind a short name or its full ``local/...`` id, if any."""
    name = name.strip()  # as resolve_dataset_id does
    entry = ALIASES.get(name)
    if entry is None:
        entry = next((e for e in ALIASES.values() if e.dataset_id == name), None)
    return entry if entry is not None and entry.kind == "recipe" else None


def suggest(name: str, limit: int = 3, kind: str | None = None) -> list[str]:
    """Alias names (of ``kind`` only, if given) close to a mistyped one, for error messages."""
    names = [alias for alias, entry in ALIASES.items() if kind is None or entry.kind == kind]
    return difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
