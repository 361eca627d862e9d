"""Fit and evaluate any backend by name: the library side of ``bm fit`` and ``bm eval``.

The CLI and ``benchmarks/density_accuracy.py`` both go through :func:`build_config` and
:func:`fit_backend`, so a benchmark fit is exactly a ``bm fit``. Nothing here knows a
backend: configs come from ``backend_class(name).config_class``, so a new backend (the score
model) works as soon as it is registered in :mod:`behavior_models.registry`.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from behavior_models.base import BehaviorModel, BehaviorModelConfig
from behavior_models.data.transitions import Transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError
from behavior_models.io import config_from_dict, config_to_dict
from behavior_models.registry import backend_class


def build_config(name: str, config_file: str | Path | None = None, *, base: dict[str, Any] | None = None,
                 **overrides: Any) -> BehaviorModelConfig:
    """The config of backend ``name``: defaults, then ``base`` (e.g. a resumed run's recorded
    budget), then the JSON file's fields, then ``overrides``.

    Overrides that are ``None`` are ignored (an option the user did not give). Unknown fields,
    in the file or the overrides, are refused with the list of valid ones.
    """
    cls = backend_class(name).config_class
    values: dict[str, Any] = dict(base or {})
    if config_file is not None:
        path = Path(config_file)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # ValueError: not JSON, or not text at all
            raise ConfigError(f"cannot read the config file {path} as JSON: {error}") from None
        if not isinstance(payload, dict):
            raise ConfigError(f"{path} must hold a JSON object of {cls.__name__} fields")
        values.update(payload)
    values.update({key: value for key, value in overrides.items() if value is not None})
    return config_from_dict(cls, config_to_dict(cls()) | values)


def fit_backend(name: str, transitions: Transitions, config: BehaviorModelConfig, out_dir: str | Path | None, *,
                device: str = "cpu", resume: bool = False, force: bool = False,
                progress: bool = True) -> BehaviorModel:
    """Fit backend ``name`` with the generic loop; writes the run directory (see training.py) if given."""
    return backend_class(name).fit(transitions, config, out_dir=out_dir, device=device, resume=resume,
                                   force=force, progress=progress)


def evaluation_split(model: BehaviorModel, transitions: Transitions) -> tuple[Transitions, str]:
    """The held-out episodes of the fit when ``transitions`` is the dataset the model was fitted on.

    The fit loop splits with ``split_episodes(config.holdout_fraction, seed=config.seed)``; the
    same call here gives the same episodes. For any other dataset the whole of it is used.
    """
    if (transitions.obs_dim, transitions.act_dim) != (model.obs_dim, model.act_dim):
        raise ArtefactMismatchError(
            f"dataset {transitions.dataset_id} has {transitions.obs_dim}-dim observations and {transitions.act_dim}-dim "
            f"actions, but this {model.name} model was fitted on {model.dataset_id or 'a dataset'} with "
            f"{model.obs_dim} and {model.act_dim}; evaluate it on that dataset (or one of the same dimensions)")
    if transitions.fingerprint == model.dataset_fingerprint:
        _, held_out = transitions.split_episodes(model.config.holdout_fraction, seed=model.config.seed)
        if len(held_out):
            return held_out, "held-out episodes of the fit"
        return transitions, "whole dataset: the training data (the fit held out nothing, holdout_fraction=0)"
    return transitions, f"whole dataset (the model was fitted on {model.dataset_id or 'another dataset'})"


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside the block and restored after it, so a report
    or a plot draws the same samples every time without changing the caller's random stream."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def evaluate(model: BehaviorModel, transitions: Transitions, *, max_points: int = 2000, num_samples: int = 10,
             batch_size: int = 512, seed: int = 0) -> dict[str, Any]:
    """Held-out log-likelihood, support-mask rates and sample statistics of ``model``.

    * ``log_prob_mean``: mean log-prob (nats per sample unless ``log_prob_kind`` is
      "unnormalized") on up to ``max_points`` held-out transitions, and ``nll`` = its negation
      (not reported for an unnormalised score);
      backends with several estimators (:attr:`evaluation_variants`) report each;
    * ``support_rate_data`` / ``support_rate_uniform``: fraction of held-out dataset actions,
      and of uniform random actions at the same states, that ``support_mask`` accepts;
    * ``samples``: per-dimension mean and std of ``num_samples`` samples per state against the
      data's, the fraction of sample entries on the box boundary, and the mean distance from each
      data action to the nearest of its state's samples.
    """
    with seeded(seed, model.device), torch.no_grad():
        return _evaluate(model, transitions, max_points, num_samples, batch_size, seed)


def _evaluate(model: BehaviorModel, transitions: Transitions, max_points: int, num_samples: int, batch_size: int,
              seed: int) -> dict[str, Any]:
    split, split_name = evaluation_split(model, transitions)
    rng = np.random.default_rng(seed)
    count = min(len(split), max_points)
    index = np.sort(rng.choice(len(split), count, replace=False))
    observations, actions = split.observations[index], split.actions[index]
    uniform = rng.uniform(-1.0, 1.0, actions.shape).astype(np.float32)

    report: dict[str, Any] = {
        "backend": model.name, "dataset": transitions.dataset_id, "split": split_name, "points": count,
        "capabilities": model.capabilities(),
        # None (JSON null), not nan: `bm eval --json` must stay JSON that strict parsers (jq) read.
        "support_threshold": None if math.isnan(float(model.support_threshold)) else float(model.support_threshold),
        "threshold_source": model.threshold_source,
    }
    # Backends with several estimators list them, default first (the CVAE: iw, elbo).
    variants = dict(getattr(model, "evaluation_variants", None) or {"default": {}})
    log_probs: dict[str, torch.Tensor] = {}
    for label, options in variants.items():
        start = time.perf_counter()
        log_probs[label] = model.batched_log_prob(observations, actions, batch_size=batch_size, **options)
        report[f"log_prob_seconds_per_1k[{label}]"] = 1000 * (time.perf_counter() - start) / count
        report[f"log_prob_mean[{label}]"] = float(log_probs[label].mean())
        if model.log_prob_kind != "unnormalized":  # an unnormalised score has no likelihood to report
            report[f"nll[{label}]"] = -float(log_probs[label].mean())
    if not math.isnan(float(model.support_threshold)):
        # The threshold was calibrated on the model's default log_prob (for the CVAE, its
        # configured estimator), so both rates use that one, not the first variant listed.
        threshold = model.resolve_threshold()
        data_lp = model.batched_log_prob(observations, actions, batch_size=batch_size)
        uniform_lp = model.batched_log_prob(observations, uniform, batch_size=batch_size)
        report["support_rate_data"] = float((data_lp >= threshold).float().mean())
        report["support_rate_uniform"] = float((uniform_lp >= threshold).float().mean())

    samples = []
    for start in range(0, count, batch_size):
        obs = torch.as_tensor(observations[start:start + batch_size], dtype=model.obs_mean.dtype, device=model.device)
        samples.append(model.sample(obs, num_samples).cpu())
    samples_np = torch.cat(samples).numpy()  # [N, n, A]
    nearest = np.linalg.norm(samples_np - actions[:, None, :], axis=-1).min(axis=1)
    report["samples"] = {
        "per_state": num_samples,
        "mean": samples_np.reshape(-1, model.act_dim).mean(0).tolist(),
        "std": samples_np.reshape(-1, model.act_dim).std(0).tolist(),
        "data_mean": actions.mean(0).tolist(),
        "data_std": actions.std(0).tolist(),
        "boundary_fraction": float(np.mean(np.abs(samples_np) >= 1.0 - 1e-6)),
        "data_boundary_fraction": float(np.mean(np.abs(actions) >= 1.0 - 1e-6)),
        "mean_distance_data_to_nearest_sample": float(nearest.mean()),
    }
    return report


