"""Backend names -> classes, imported lazily so ``import behavior_models`` stays light."""

from __future__ import annotations

import importlib
from pathlib import Path

from behavior_models.errors import ArtefactMismatchError, ConfigError

# name -> "module:Class". One line per backend; nothing else to edit when adding one.
BACKENDS: dict[str, str] = {
    "gaussian": "behavior_models.gaussian:GaussianBehaviorModel",
    "cvae": "behavior_models.cvae:CVAEBehaviorModel",
    "flow": "behavior_models.flow:FlowBehaviorModel",
    "gan": "behavior_models.gan:GANBehaviorModel",
    "score": "behavior_models.score.model:ScoreBehaviorModel",
}


def lazy_lookup(table: dict[str, str], name: str, what: str):
    """Import and return the class ``table[name]`` names as ``"module:Class"``.

    Shared by this registry and :mod:`rl.algos`, so that listing names never imports torch.
    """
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; choose one of {sorted(table)}")
    module_name, class_name = table[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_class(name: str):
    return lazy_lookup(BACKENDS, name, "behavior model")


def load(directory: str | Path, device="cpu"):
    """Load a fitted behavior model from ``directory``, whatever its backend."""
    from behavior_models.base import MODEL_FILE
    from behavior_models.io import read_json_artefact

    directory = Path(directory)
    meta_path = directory / MODEL_FILE
    if not meta_path.is_file():
        raise ArtefactMismatchError(f"{directory} is not a behavior-model directory: {MODEL_FILE} is missing "
                                    "(fit one with `bm fit --model ... --out DIR`)")
    meta = read_json_artefact(meta_path, "refit with `bm fit --model BACKEND --dataset DATASET --out DIR --force`")
    if not isinstance(meta, dict) or "backend" not in meta:
        raise ArtefactMismatchError(f"{meta_path} names no backend: it is not a behavior model's record (refit with "
                                    "`bm fit`)")
    return backend_class(meta["backend"]).from_directory(directory, device=device)
