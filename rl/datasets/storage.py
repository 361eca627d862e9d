"""Writing a recipe's episodes as a Minari dataset, atomically, and reading episodes back.

A generation that is interrupted must never leave a half-written dataset under its final
name (``is_local`` would then take it as built). :func:`behavior_models.data.write_minari_dataset`
guarantees this (it builds in a staging root beside the real one and renames into place);
this module adds the recipe's metadata and its policy for a dataset that appears meanwhile.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from behavior_models.data import write_minari_dataset
from behavior_models.data.minari_io import dataset_path

RECIPE_METADATA_KEY = "recipe"  # the recipe config and its measured statistics, in the Minari metadata


def write_dataset_atomically(
    dataset_id: str,
    episodes: Sequence[dict[str, Any]],
    *,
    env: Any,
    eval_env: Any,
    ref_min_score: float | None,
    ref_max_score: float | None,
    metadata: dict[str, Any],
    description: str,
    overwrite: bool,
    observation_space: Any = None,
    action_space: Any = None,
) -> str:
    """Write ``episodes`` as ``dataset_id`` under the datasets root; returns the id.

    ``metadata`` (JSON-ready) is added to the dataset's metadata under :data:`RECIPE_METADATA_KEY`.
    """
    target = dataset_path(dataset_id)
    if target.exists() and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists at {target}; pass overwrite=True to replace it")
    try:
        write_minari_dataset(
            dataset_id, episodes, env=env, eval_env=eval_env, ref_min_score=ref_min_score,
            ref_max_score=ref_max_score, algorithm_name="behavior_models.rl.datasets",
            description=description, observation_space=observation_space, action_space=action_space,
            metadata={RECIPE_METADATA_KEY: metadata}, overwrite=overwrite,
        )
    except FileExistsError:
        if overwrite or not target.exists():
            raise
        # Absent at the check above, so another process built it meanwhile: keep theirs, which
        # may be in use.
    return dataset_id


def recipe_metadata(dataset_id: str) -> dict[str, Any] | None:
    """The recipe block a dataset on disk was written with, or None (not built by a recipe)."""
    import minari

    return minari.load_dataset(dataset_id).storage.metadata.get(RECIPE_METADATA_KEY)


def read_episodes(dataset) -> list[dict[str, Any]]:
    """Every episode of an open ``MinariDataset`` as a ``create_dataset_from_buffers`` dict."""
    return [
        {
            "observations": episode.observations,
            "actions": np.asarray(episode.actions),
            "rewards": np.asarray(episode.rewards),
            "terminations": np.asarray(episode.terminations, bool),
            "truncations": np.asarray(episode.truncations, bool),
        }
        for episode in dataset.iterate_episodes()
    ]
