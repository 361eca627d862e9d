"""Datasets: Minari loading, the alias table, :class:`Transitions` and state normalisation."""

from behavior_models.data.aliases import ALIASES, DEFAULT_DATASET, recipe_for, resolve_dataset_id
from behavior_models.data.minari_io import describe, is_local, list_local_datasets, load_transitions
from behavior_models.data.transitions import DatasetInfo, NormalizationStats, Transitions
from behavior_models.data.writing import write_minari_dataset

__all__ = [
    "ALIASES", "DEFAULT_DATASET", "DatasetInfo", "NormalizationStats", "Transitions", "describe", "is_local",
    "list_local_datasets", "load_transitions", "recipe_for", "resolve_dataset_id", "write_minari_dataset",
]
