"""Opening ``--behavior``: a sample cache (``.npz``) or a behavior-model directory.

Each algorithm declares the kind it needs (:attr:`rl.algos.base.Algorithm.behavior_kind`);
the other kind is refused with a message that says what to pass instead. Every artefact is
checked against the dataset it is used with (the dataset fingerprint it records) before use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from behavior_models.base import MODEL_FILE
from behavior_models.cache import SampleCache
from behavior_models.data import Transitions
from behavior_models.errors import ArtefactMismatchError
from behavior_models.io import file_sha256, fingerprint_directory


def artefact_kind(path: str | Path) -> str:
    """``"cache"`` for an ``.npz`` file, ``"model"`` for a directory holding ``model.json``."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        return "cache"
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return "model"
    if not path.exists():
        raise ArtefactMismatchError(f"--behavior {path} does not exist")
    raise ArtefactMismatchError(f"--behavior {path} is neither a sample cache (.npz file) nor a behavior-model "
                                f"directory (a directory with {MODEL_FILE}, made by `bm fit`)")


def file_fingerprint(path: str | Path) -> str:
    return file_sha256(path)[:16]


def load_cache(path: str | Path, transitions: Transitions, device: str | torch.device) -> SampleCache:
    """The sample cache at ``path`` on ``device``, refused unless built for ``transitions``."""
    cache = SampleCache.load(path, device=device)
    check_cache(cache, transitions, source=str(path))
    return cache


def check_cache(cache: SampleCache, transitions: Transitions, source: str = "the sample cache") -> None:
    """Refuse a cache built for another dataset or view of its goal switches
    (:meth:`SampleCache.check`), or whose arrays do not fit ``transitions``."""
    cache.check(transitions)
    rows, _, act_dim = cache.candidates.shape
    problems = []
    if act_dim != transitions.act_dim:
        problems.append(f"its candidates have {act_dim} action dims, the dataset {transitions.act_dim}")
    for name in ("obs_row", "next_obs_row"):
        index = getattr(cache, name)
        if index.shape != (len(transitions),):
            problems.append(f"{name} has shape {tuple(index.shape)}, the dataset has {len(transitions)} transitions")
        elif len(index) and (int(index.min()) < 0 or int(index.max()) >= rows):
            problems.append(f"{name} points outside the cache's {rows} rows")
    if problems:
        raise ArtefactMismatchError(f"{source} does not fit dataset {transitions.dataset_id}: " + "; ".join(problems)
                                    + ". Rebuild it with `bm sample-cache` for this dataset.")


def load_model(directory: str | Path, transitions: Transitions, device: str | torch.device):
    """The behavior model in ``directory`` on ``device``, frozen, refused unless fitted on ``transitions``."""
    import behavior_models

    model = behavior_models.load(directory, device=device)
    if model.dataset_fingerprint and model.dataset_fingerprint != transitions.fingerprint:
        raise ArtefactMismatchError(
            f"behavior model {directory} was fitted on dataset {model.dataset_id} (fingerprint "
            f"{model.dataset_fingerprint}), not on {transitions.dataset_id} (fingerprint {transitions.fingerprint}); "
            "fit one on this dataset with `bm fit`")
    model.requires_grad_(False)
    return model.eval()


def describe_behavior(cache_path: str | None, model_dir: str | None) -> dict[str, Any]:
    """What config.json records about the behaviour artefacts: paths and content fingerprints."""
    record: dict[str, Any] = {"cache": None, "model_dir": None}
    if cache_path is not None:
        record["cache"] = {"path": str(Path(cache_path).resolve()), "fingerprint": file_fingerprint(cache_path)}
    if model_dir is not None:
        meta = json.loads((Path(model_dir) / MODEL_FILE).read_text())
        record["model_dir"] = {"path": str(Path(model_dir).resolve()), "backend": meta.get("backend"),
                               "fingerprint": fingerprint_directory(model_dir)}
    return record
