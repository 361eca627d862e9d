"""Writing a recipe's episodes as a Minari dataset, atomically, and reading episodes back.

A generation that is interrupted must never leave a half-written dataset under its final
name (``is_local`` would then take it as built). So the dataset is written with
:func:`behavior_models.data.write_minari_dataset` into a private staging root beside the
real one, then its directory is renamed into place (``os.replace``, atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from behavior_models.data import write_minari_dataset
from behavior_models.data.minari_io import dataset_path, datasets_root

RECIPE_METADATA_KEY = "recipe"  # the recipe config and its measured statistics, in the Minari metadata


@contextlib.contextmanager
def _minari_root(root: Path) -> Iterator[None]:
    """Point Minari (which reads MINARI_DATASETS_PATH at each call) at ``root`` for a while."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


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
    root = datasets_root()
    target = dataset_path(dataset_id)
    if target.exists() and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists at {target}; pass overwrite=True to replace it")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        with _minari_root(staging):
            dataset = write_minari_dataset(
                dataset_id, episodes, env=env, eval_env=eval_env, ref_min_score=ref_min_score,
                ref_max_score=ref_max_score, algorithm_name="behavior_models.rl.datasets",
                description=description, observation_space=observation_space, action_space=action_space,
            )
            dataset.storage.update_metadata({RECIPE_METADATA_KEY: metadata})
            del dataset  # release the HDF5 file before the move
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            if not overwrite:  # another process built it meanwhile: keep theirs, which is in use
                return dataset_id
            shutil.rmtree(target)
        os.replace(staging / dataset_id, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
