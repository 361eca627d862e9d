"""Writing episodes as a real Minari dataset (``minari.create_dataset_from_buffers``).

Used by the dataset recipes, the tests and the benchmarks, so that everything this library
generates is read back through the same path as a downloaded dataset.
"""

from __future__ import annotations

import shutil
import warnings
from typing import Any, Sequence

from behavior_models.data.minari_io import dataset_path


def write_minari_dataset(
    dataset_id: str,
    episodes: Sequence[dict[str, Any]],
    *,
    observation_space: Any = None,
    action_space: Any = None,
    env: Any = None,
    eval_env: Any = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    algorithm_name: str = "behavior_models",
    description: str = "",
    overwrite: bool = False,
):
    """Create ``dataset_id`` from episode dicts and return the opened ``MinariDataset``.

    Each episode (a dict, or a ``minari.data_collector.EpisodeBuffer``) holds ``observations`` (T+1 rows, or a dict of such arrays),
    ``actions``, ``rewards``, ``terminations`` and ``truncations`` (T rows each), as
    ``create_dataset_from_buffers`` expects. Reference scores are stored as the
    ``ref_min_score``/``ref_max_score`` metadata keys Minari's own datasets use.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [episode if isinstance(episode, EpisodeBuffer) else EpisodeBuffer(**episode) for episode in episodes]
    target = dataset_path(dataset_id)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"dataset {dataset_id} already exists at {target}; pass overwrite=True to replace it")
        shutil.rmtree(target)
    # Reference scores are written afterwards, with update_metadata: create_dataset_from_buffers
    # drops them when there is no eval env, and rolls out 100 random episodes when only
    # ref_max_score is given. Recipes measure both themselves.
    with warnings.catch_warnings():
        # Minari warns about every optional metadata field left empty; nothing to act on here.
        warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None).*", category=UserWarning)
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env,
            eval_env=eval_env,
            observation_space=observation_space,
            action_space=action_space,
            algorithm_name=algorithm_name,
            author="behavior-models",
            author_email="behavior-models@localhost",
            code_permalink="behavior-models",
            description=description or f"{dataset_id}, written by behavior_models",
        )
    if ref_min_score is not None or ref_max_score is not None:
        if ref_min_score is None or ref_max_score is None:
            raise ValueError("give both ref_min_score and ref_max_score, or neither")
        dataset.storage.update_metadata({"ref_min_score": float(ref_min_score), "ref_max_score": float(ref_max_score)})
    return dataset
