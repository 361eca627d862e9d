"""Loading Minari datasets into :class:`Transitions`.

Stock datasets a user downloaded (``D4RL/kitchen/mixed-v2``) and the datasets this library
builds locally go through exactly this code path: ``minari.load_dataset`` and
``iterate_episodes``.

Dict observations are flattened in a fixed order: ``observation``, then ``achieved_goal``,
then ``desired_goal`` where present, then any other top-level key in sorted order. Nested
dicts (Kitchen's goals map task names to arrays) are flattened recursively in sorted key
order. The resulting key paths are kept in ``DatasetInfo.observation_keys``, and their
numbers of columns in ``DatasetInfo.observation_sizes``.

Actions outside the dataset's declared action box are clipped to it, with a warning that
counts them (the count is kept in ``DatasetInfo.clipped_action_entries``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from behavior_models.data.aliases import ALIASES, RECIPE_NAMESPACE, recipe_for, resolve_dataset_id, suggest
from behavior_models.data.transitions import DatasetInfo, Transitions
from behavior_models.errors import DatasetError, DatasetNotFoundError

PRIORITY_KEYS = ("observation", "achieved_goal", "desired_goal")


def datasets_root() -> Path:
    """Where Minari looks for datasets: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``.

    A variable that is set but empty is refused: Minari takes it as the path "" and fails inside
    ``os.makedirs`` with a bare FileNotFoundError, while a reader of the environment would expect
    the default directory.
    """
    configured = os.environ.get("MINARI_DATASETS_PATH")
    if configured is not None and not configured.strip():
        raise DatasetError("MINARI_DATASETS_PATH is set but empty: unset it (`unset MINARI_DATASETS_PATH`) to use "
                           "~/.minari/datasets, or set it to the directory that holds the datasets")
    return Path(configured) if configured is not None else Path.home() / ".minari" / "datasets"


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def is_local(name: str) -> bool:
    """True if the dataset behind ``name`` (an alias or a Minari id) is on disk."""
    return (dataset_path(resolve_dataset_id(name)) / "data").is_dir()


def not_found_error(name: str) -> DatasetNotFoundError:
    """The error for a dataset that is not on disk: what was searched and how to get it."""
    dataset_id = resolve_dataset_id(name)
    root = datasets_root()
    where = "$MINARI_DATASETS_PATH" if os.environ.get("MINARI_DATASETS_PATH") else "~/.minari/datasets"
    lines = [f"dataset {dataset_id!r}" + (f" (alias {name!r})" if name != dataset_id else "")
             + f" is not on disk: searched {root / dataset_id} ({where})."]
    recipe = recipe_for(name)
    if recipe is not None:
        lines.append(f"It is a built-in recipe: build it with `bm datasets make {recipe.name}`.")
    elif dataset_id.startswith(f"{RECIPE_NAMESPACE}/"):  # this library's namespace: never on Minari's server
        close = suggest(dataset_id.removeprefix(f"{RECIPE_NAMESPACE}/").removesuffix("-v0"), kind="recipe")
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        lines.append(f"{RECIPE_NAMESPACE}/ holds the built-in recipes, and this is none of them.{hint} "
                     "`bm datasets` lists them; build one with `bm datasets make NAME`.")
    elif name in ALIASES or "/" in dataset_id:
        lines.append(
            f"To get it: run `minari download {dataset_id}` on a machine with network access and copy "
            f"{Path('~/.minari/datasets') / dataset_id} over, or point MINARI_DATASETS_PATH at a directory "
            "that holds it."
        )
    else:
        close = suggest(name)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        lines.append(f"{name!r} is neither a known alias nor a Minari id on disk.{hint} `bm datasets` lists both.")
    return DatasetNotFoundError(" ".join(lines))


def flatten_observations(observations: Any, prefix: str = "") -> tuple[np.ndarray, list[str], list[int]]:
    """Flatten an episode's observations (array or nested dict of arrays) to [T+1, S], with the
    key path of each flattened array and its number of columns, in column order."""
    if not isinstance(observations, dict):
        array = np.asarray(observations)
        flat = array.reshape(array.shape[0], -1).astype(np.float32)
        return flat, ([prefix] if prefix else []), ([flat.shape[1]] if prefix else [])
    top_level = not prefix
    keys = [k for k in PRIORITY_KEYS if k in observations] if top_level else []
    keys += sorted(k for k in observations if k not in keys)
    parts, names, sizes = [], [], []
    for key in keys:
        part, part_names, part_sizes = flatten_observations(
            observations[key], f"{prefix}{key}" if top_level else f"{prefix}/{key}")
        parts.append(part)
        names.extend(part_names)
        sizes.extend(part_sizes)
    return np.concatenate(parts, axis=1), names, sizes


def load_transitions(name: str, *, clip_actions: bool = True) -> Transitions:
    """Load a Minari dataset (alias or id) as :class:`Transitions`.

    Raises :class:`DatasetNotFoundError` at once (no download attempt, no retries) if it is not
    on disk, and :class:`DatasetError` for empty data, non-finite values, or files Minari cannot
    read (an interrupted download).
    """
    dataset_id = resolve_dataset_id(name)
    if not (dataset_path(dataset_id) / "data").is_dir():
        raise not_found_error(name)

    import minari  # deferred: keeps `bm --help` and the not-found path fast

    try:
        dataset = minari.load_dataset(dataset_id)
    except (OSError, ValueError) as error:
        raise unreadable_error(dataset_id, error) from error
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (
        "observations", "actions", "rewards", "next_observations", "next_actions", "next_action_valid",
        "terminals", "timeouts", "episode_ids", "timesteps")}
    observation_keys: list[str] = []
    observation_sizes: list[int] = []
    for episode in _episodes(dataset, dataset_id):
        obs, observation_keys, observation_sizes = flatten_observations(episode.observations)
        actions = np.asarray(episode.actions, np.float32).reshape(len(episode.actions), -1)
        steps = actions.shape[0]
        if steps == 0:
            continue
        if obs.shape[0] != steps + 1:
            raise DatasetError(
                f"dataset {dataset_id}: episode {episode.id} has {obs.shape[0]} observations for {steps} actions; "
                "Minari episodes must store T+1 observations for T actions."
            )
        columns["observations"].append(obs[:-1])
        columns["next_observations"].append(obs[1:])
        columns["actions"].append(actions)
        columns["next_actions"].append(np.concatenate([actions[1:], np.zeros_like(actions[:1])]))
        columns["next_action_valid"].append(np.arange(steps) < steps - 1)
        columns["rewards"].append(np.asarray(episode.rewards, np.float32).reshape(steps))
        columns["terminals"].append(np.asarray(episode.terminations, bool).reshape(steps))
        columns["timeouts"].append(np.asarray(episode.truncations, bool).reshape(steps))
        columns["episode_ids"].append(np.full(steps, episode.id, np.int64))
        columns["timesteps"].append(np.arange(steps, dtype=np.int64))

    if not columns["actions"]:
        raise DatasetError(f"dataset {dataset_id} is empty: it holds no transitions.")
    arrays = {key: np.concatenate(value) for key, value in columns.items()}
    for key in ("observations", "next_observations", "actions", "rewards"):
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise DatasetError(
                f"dataset {dataset_id}: {int(bad.sum())} non-finite (NaN/inf) values in {key}, "
                f"first at transition {int(rows[0])} (episode {int(arrays['episode_ids'][rows[0]])}). "
                "Remove or repair those episodes before fitting."
            )

    low, high = _action_bounds(dataset.action_space, arrays["actions"].shape[1])
    outside = (arrays["actions"] < low) | (arrays["actions"] > high)
    clipped = int(outside.sum())
    if clipped:
        message = (f"dataset {dataset_id}: {clipped} action entries lie outside the declared action box "
                   f"[{low.min():g}, {high.max():g}]")
        if clip_actions:
            warnings.warn(message + "; they were clipped to the box.", stacklevel=2)
            np.clip(arrays["actions"], low, high, out=arrays["actions"])
            np.clip(arrays["next_actions"], low, high, out=arrays["next_actions"])
        else:
            warnings.warn(message + "; kept as they are (clip_actions=False).", stacklevel=2)

    metadata = dataset.storage.metadata
    info = DatasetInfo(
        dataset_id=dataset_id,
        obs_dim=int(arrays["observations"].shape[1]),
        act_dim=int(arrays["actions"].shape[1]),
        num_episodes=int(len(np.unique(arrays["episode_ids"]))),
        num_transitions=int(arrays["actions"].shape[0]),
        observation_keys=tuple(observation_keys),
        observation_sizes=tuple(observation_sizes),
        action_low=tuple(float(x) for x in low),
        action_high=tuple(float(x) for x in high),
        ref_min_score=_optional_float(metadata.get("ref_min_score")),
        ref_max_score=_optional_float(metadata.get("ref_max_score")),
        has_env_spec=dataset.spec.env_spec is not None,
        has_eval_env_spec=metadata.get("eval_env_spec") is not None or dataset.spec.env_spec is not None,
        clipped_action_entries=clipped,
    )
    return Transitions(**arrays, info=info)


def unreadable_error(dataset_id: str, error: BaseException) -> DatasetError:
    """The error for a dataset on disk that Minari cannot read, e.g. one whose download was interrupted."""
    recipe = recipe_for(dataset_id)
    fix = (f"rebuild it with `bm datasets make {recipe.name} --force`" if recipe is not None else
           f"if its download was interrupted, download it again with `minari download {dataset_id} --force` "
           "(without --force Minari skips a dataset directory that exists)")
    return DatasetError(f"Minari cannot read dataset {dataset_id} at {dataset_path(dataset_id)} "
                        f"({type(error).__name__}: {error}); {fix}.")


def _episodes(dataset: Any, dataset_id: str) -> Iterator[Any]:
    """``dataset.iterate_episodes()``, with Minari's read errors (a truncated file) as :func:`unreadable_error`."""
    episodes = dataset.iterate_episodes()
    while True:
        try:
            episode = next(episodes)
        except StopIteration:
            return
        except (OSError, ValueError) as error:
            raise unreadable_error(dataset_id, error) from error
        yield episode


def _action_bounds(space: Any, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.broadcast_to(np.asarray(getattr(space, "low", -np.inf), np.float32), (act_dim,))
    high = np.broadcast_to(np.asarray(getattr(space, "high", np.inf), np.float32), (act_dim,))
    return low.copy(), high.copy()


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(np.asarray(value).reshape(()))


def describe(transitions: Transitions) -> dict[str, Any]:
    """The summary `bm datasets info` prints: sizes, returns, reference scores, boundary mass."""
    returns = transitions.episode_returns()
    info = transitions.info
    return {
        "dataset_id": info.dataset_id,
        "transitions": len(transitions),
        "episodes": info.num_episodes,
        "obs_dim": info.obs_dim,
        "act_dim": info.act_dim,
        "observation_keys": list(info.observation_keys),
        "terminals": int(transitions.terminals.sum()),
        "timeouts": int(transitions.timeouts.sum()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
        "has_env_spec": info.has_env_spec,
        "action_boundary_fraction": transitions.boundary_fraction(),
        "clipped_action_entries": info.clipped_action_entries,
        "fingerprint": transitions.fingerprint,
    }


def list_local_datasets() -> list[str]:
    """Ids of the Minari datasets on disk, found the way ``minari.load_dataset`` finds them."""
    root = datasets_root()
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("data"):
        relative = path.parent.relative_to(root)
        # Dot-dirs are not datasets: a build's staging root (.building-*), left behind when the
        # build was killed, holds a complete-looking copy of the dataset it was writing.
        if (path / "metadata.json").is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append(str(relative))
    return sorted(found)
