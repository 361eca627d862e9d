"""Sample caches: N behaviour-model actions per dataset state, drawn once and reused.

ARQ bootstraps from N candidates of beta(.|s') at every next observation and baselines its
advantages with N candidates at every observation (seed 002, Eq. 5; ALGORITHMS.md, "ARQ").
Sampling a score model is costly, so :func:`build_sample_cache` (``bm sample-cache``) does it
once, in chunks on the device, resumably and across ``torchrun`` ranks, and consumers read the
result with :meth:`SampleCache.load`.

Which states
------------
Each dataset state appears once: for every episode its observations s_0 .. s_{T-1}, then its
final next observation s_T. Within an episode s_{t+1} is the next transition's observation, so
it is not sampled twice. M = (number of transitions) + (number of episodes) rows, in dataset
order. The states are not stored: :func:`cache_states` rebuilds them from the dataset, and
``obs_row`` / ``next_obs_row`` map every transition to its rows (``next_obs_row = obs_row + 1``).
A cache of the ``relabel`` goal-switch view (:mod:`behavior_models.data.goals`) also has a row
for each relabelled next observation, which no transition starts from.

File format (``.npz``, loads with ``np.load(path, allow_pickle=False)``)
----------------------------------------------------------------------------
==================  ===============  ==========================================================
``candidates``      [M, N, A]        float32 (float16 with ``dtype="float16"``), in [-1, 1]
``log_probs``       [M, N] float32   the model's log_prob of the float32 action, clipped to the
                                     box *before* scoring (with ``dtype="float16"`` the stored
                                     action is that one rounded to float16): nats, or the
                                     discriminator's logit for a model whose ``log_prob_kind``
                                     is ``"unnormalized"`` (the GAN); NaN with ``likelihood="none"``
``in_support``      [M, N] bool      ``log_probs >= threshold`` (all True with ``likelihood="none"``)
``obs_row``         [T] int64        row of each transition's observation s_t
``next_obs_row``    [T] int64        row of each transition's next observation s_{t+1}
``metadata_json``   0-d unicode      JSON, see below
==================  ===============  ==========================================================

``metadata_json`` holds: ``format_version``; ``dataset_id``, ``dataset_fingerprint``,
``goal_switch`` (the view of the transitions, ``info.goal_switch``; a cache without it is of
``keep``), ``num_transitions``, ``num_states``; ``model_dir`` (absolute path), ``model_fingerprint``
(:func:`behavior_models.io.fingerprint_directory`), ``backend``, ``log_prob_kind``;
``num_samples``; ``threshold`` = {``value``, ``kind`` ("absolute": by default ARQ's
log eps = -5, :data:`~behavior_models.base.ARQ_LOG_THRESHOLD`; "calibrated": the model's
stored threshold, also the default for an unnormalised ``log_prob`` such as the GAN's
discriminator logit, which e^-5 as a density does not apply to; "none", with value null,
for ``likelihood="none"``), ``source``};
``likelihood`` ("joint": ``sample_and_log_prob`` in one pass, e.g. the score model's ODE
sampler; "separate": ``sample`` then a ``log_prob`` pass, e.g. after PC sampling; "none");
``sampler_options``, ``log_prob_options``; ``log_probs_scored_after_clipping`` (true
whenever log-probs were computed, see the contract's ``sample_and_log_prob``; false with
``likelihood="none"``, which scores nothing) and ``boundary_samples`` (how many
candidates touch the box edge, i.e. were most likely clipped); ``seed``, ``batch_states``,
``rng``; ``device_type``; ``dtype``; ``library_version``; ``created_utc``; ``world_size``; ``elapsed_seconds``.

Random numbers
--------------
States are processed in blocks of ``batch_states`` consecutive rows aligned to absolute row
indices (block b holds rows [b*B, (b+1)*B)); one model call draws the N samples of one block.
Before that call the global torch RNG is seeded with a hash of (seed, b), inside
``torch.random.fork_rng`` so the caller's RNG state is untouched. Every backend draws its noise
from the global RNG, so a state's samples depend only on (seed, batch_states, its row) and the
device type, never on chunking, resume or the rank that computed them. Changing ``batch_states``
changes the draws (like changing the seed), and CPU and CUDA generators give different streams
from one seed: both are recorded, and a resume refuses a different value.

Streaming and resume
--------------------
Rows are grouped into chunks of ``chunk_states`` (a multiple of ``batch_states``; by default 16
batches, or fewer if that exceeds 64 MiB of output). Each finished
chunk is written atomically to ``<out>.work/chunk-<start>-<stop>.npz``; the work directory also
holds ``manifest.json`` with the settings. A rerun with the same settings skips finished chunks;
a rerun with other settings, or after the model directory changed, is refused. When every chunk
exists they are merged into the output arrays, a copy of ``metadata_json`` is written to
``<out>.json`` (readable without NumPy), the arrays go to ``<out>`` through a temporary file and
a rename, and the work directory is removed. Memory: one chunk while sampling; the output
arrays (plus one chunk) while merging.

Refusals
--------
Building refuses a model fitted on another dataset (fingerprints differ) and, on resume, a model
directory that changed since the cache was started. Consumers call :meth:`SampleCache.check`
(or :meth:`SampleCache.matches`), which refuses a cache built on another dataset; every message
names both fingerprints.

Scale-out
---------
``torchrun --standalone --nproc_per_node K -m cli.bm sample-cache ...``: chunk c goes to rank
c mod K; ranks write their own chunk files, meet at a barrier (gloo: only barriers are
exchanged, so gloo serves GPUs too), and rank 0 merges. The progress bar (rank 0) counts rank 0's
share. With several GPUs and ``--device cuda``,
rank r uses ``cuda:<LOCAL_RANK>``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from behavior_models import __version__
from behavior_models.base import ARQ_LOG_THRESHOLD, BehaviorModel
from behavior_models.data.transitions import Transitions
from behavior_models.errors import ArtefactMismatchError, BehaviorModelsError, ConfigError, first_lines
from behavior_models.io import fingerprint_directory, load_npz, save_npz_atomic, write_json_atomic

FORMAT_VERSION = 1
ARRAYS = ("candidates", "log_probs", "in_support", "obs_row", "next_obs_row", "metadata_json")
# The metadata the library reads back (consumers' checks, ARQ's model lookup); see the format above.
REQUIRED_METADATA = ("dataset_id", "dataset_fingerprint", "model_dir", "model_fingerprint", "backend", "threshold")
DTYPES = {"float32": np.float32, "float16": np.float16}
LIKELIHOODS = ("joint", "separate", "none")
MANIFEST_FILE = "manifest.json"
CHUNK_TARGET_BYTES = 64 * 2**20  # default chunk: at most about this much candidate/log-prob data
CHUNK_MAX_BATCHES = 16  # ... and at most this many model calls, so a kill loses little work
RNG_SCHEME = "torch global RNG seeded per block of batch_states rows with SeedSequence([seed, block])"


# ---------------------------------------------------------------------------- states
def cache_states(transitions: Transitions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(states [M, S], obs_row [T], next_obs_row [T]): every dataset state once.

    Transition t's next observation shares a row with transition t+1's observation when both
    are in the same episode and the arrays agree (the loader guarantees it); otherwise (an
    episode's last step, or a dataset whose episodes were cut) it gets a row of its own,
    right after s_t's, so ``next_obs_row == obs_row + 1`` always.
    """
    obs, next_obs, episodes = transitions.observations, transitions.next_observations, transitions.episode_ids
    linked = np.zeros(len(transitions), bool)
    linked[:-1] = (episodes[1:] == episodes[:-1]) & np.all(next_obs[:-1] == obs[1:], axis=1)
    extra_before = np.concatenate([[0], np.cumsum(~linked)[:-1]])
    obs_row = np.arange(len(transitions), dtype=np.int64) + extra_before
    next_obs_row = obs_row + 1
    states = np.empty((len(transitions) + int((~linked).sum()), obs.shape[1]), obs.dtype)
    states[obs_row] = obs
    states[next_obs_row] = next_obs
    return states, obs_row, next_obs_row


# ---------------------------------------------------------------------------- consumers
class SampleCache:
    """A loaded sample cache: tensors on one device plus its metadata dict.

    ``candidates`` [M, N, A], ``log_probs`` [M, N], ``in_support`` [M, N], ``obs_row`` [T] and
    ``next_obs_row`` [T]; see the module docstring for their meaning. Check it against the
    dataset you train on with :meth:`check` (or :meth:`matches`) before using it.
    """

    def __init__(self, candidates: torch.Tensor, log_probs: torch.Tensor, in_support: torch.Tensor,
                 obs_row: torch.Tensor, next_obs_row: torch.Tensor, metadata: dict[str, Any],
                 path: Path | None = None) -> None:
        self.candidates, self.log_probs, self.in_support = candidates, log_probs, in_support
        self.obs_row, self.next_obs_row = obs_row, next_obs_row
        self.metadata = metadata
        self.path = path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "SampleCache":
        path = Path(path)
        if not path.is_file():
            raise ArtefactMismatchError(f"no sample cache at {path}; build one with `bm sample-cache --out {path}`")
        try:
            arrays = load_npz(path)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # BadZipFile: a truncated npz
            raise ArtefactMismatchError(f"{path} is not a readable sample cache ({error})") from None
        missing = [key for key in ARRAYS if key not in arrays]
        if missing:
            raise ArtefactMismatchError(f"{path} is not a sample cache: it lacks {missing}")
        try:
            metadata = json.loads(str(arrays["metadata_json"]))
        except ValueError as error:
            raise ArtefactMismatchError(f"{path} is damaged: its metadata_json is not JSON ({first_lines(error)}); "
                                        "rebuild it with `bm sample-cache`") from None
        if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
            version = metadata.get("format_version") if isinstance(metadata, dict) else None
            raise ArtefactMismatchError(f"{path} has cache format {version}, this library reads {FORMAT_VERSION}; "
                                        "rebuild it with `bm sample-cache`")
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise ArtefactMismatchError(f"{path} is damaged: its metadata lacks {', '.join(missing)}; rebuild it with "
                                        "`bm sample-cache`")
        tensors = {key: torch.as_tensor(arrays[key], device=device) for key in ARRAYS[:-1]}
        return cls(**tensors, metadata=metadata, path=path)

    @property
    def num_states(self) -> int:
        return int(self.candidates.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.candidates.shape[1])

    @property
    def threshold(self) -> float | None:
        """The log-density the mask was cut at; None for a cache built with ``likelihood="none"``."""
        value = self.metadata["threshold"]["value"]
        return None if value is None else float(value)

    @property
    def dataset_fingerprint(self) -> str:
        return self.metadata["dataset_fingerprint"]

    @property
    def goal_switch(self) -> str:
        return self.metadata.get("goal_switch", "keep")

    def _built_on_dataset_of(self, transitions: Transitions) -> bool:
        """True when the cache was drawn for this dataset (same content fingerprint and size), in
        either view of its goal switches."""
        return (transitions.fingerprint == self.dataset_fingerprint
                and len(transitions) == int(self.obs_row.shape[0]))

    def matches(self, transitions: Transitions) -> bool:
        """True when the cache was built on exactly this dataset (same content fingerprint) and
        view of its goal switches."""
        return self._built_on_dataset_of(transitions) and transitions.info.goal_switch == self.goal_switch

    def check(self, transitions: Transitions) -> None:
        """Raise :class:`ArtefactMismatchError` unless the cache was built on ``transitions``."""
        if self._built_on_dataset_of(transitions) and not self.matches(transitions):
            raise ArtefactMismatchError(
                f"sample cache {self.path or ''} was built on the {self.goal_switch!r} view of "
                f"{transitions.dataset_id}'s goal switches, and these transitions are its "
                f"{transitions.info.goal_switch!r} view "
                "(behavior_models.data.goals); rebuild the cache with `bm sample-cache --goal-switch "
                f"{transitions.info.goal_switch}`, or train with --set goal_switch={self.goal_switch} (in Python: "
                f"rl.core.rewards.goal_switch_view(transitions, {self.goal_switch!r}))")
        if not self.matches(transitions):
            raise ArtefactMismatchError(
                f"sample cache {self.path or ''} was built on dataset {self.metadata['dataset_id']} "
                f"(fingerprint {self.dataset_fingerprint}, {self.obs_row.shape[0]} transitions), but the "
                f"dataset given is {transitions.dataset_id} (fingerprint {transitions.fingerprint}, "
                f"{len(transitions)} transitions); rebuild the cache with `bm sample-cache --dataset "
                f"{transitions.dataset_id}`")

    def states(self, transitions: Transitions) -> torch.Tensor:
        """The [M, S] states the rows refer to, on the cache's device (after :meth:`check`)."""
        self.check(transitions)
        return torch.as_tensor(cache_states(transitions)[0], device=self.candidates.device)

    def model_matches(self, model_dir: str | os.PathLike) -> bool:
        """True when ``model_dir`` still holds the model the cache was drawn from."""
        return fingerprint_directory(model_dir) == self.metadata["model_fingerprint"]


# ---------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed() -> Ranks:
    """Join the ``torchrun`` process group if there is one (gloo; only barriers are sent)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=24))  # ranks may wait long at barriers
    if dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def rank_device(device: str | torch.device, ranks: Ranks) -> torch.device:
    """``device``, except that with several GPUs a bare "cuda" means this rank's own GPU."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and ranks.world_size > 1 and torch.cuda.device_count() > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", ranks.rank))
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


# ---------------------------------------------------------------------------- building
def block_seed(seed: int, block: int) -> int:
    """The torch seed of block ``block`` (rows [block*B, (block+1)*B)) for run seed ``seed``."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _parse_threshold(model: BehaviorModel, threshold: float | str | None, likelihood: str) -> dict[str, Any]:
    if likelihood == "none":
        if threshold is not None:
            raise ConfigError(f"threshold {threshold!r} given with likelihood='none', which scores no candidate and "
                              "keeps them all: drop the threshold, or choose likelihood 'joint' or 'separate'")
        return {"value": None, "kind": "none", "source": "likelihood='none': no log-probs, every candidate kept"}
    if threshold is None and model.log_prob_kind == "unnormalized":
        # ARQ's e^-5 is a density; this log_prob (the GAN's discriminator logit) is not one.
        if model.threshold_source == "none":
            raise ConfigError(f"the {model.name}'s log_prob is unnormalised (a discriminator logit), so ARQ's "
                              "log-density threshold does not apply, and this model has no calibrated one (fitted "
                              "with holdout_fraction=0): pass a threshold in its units (threshold=0 keeps D >= 0.5), "
                              "refit with holdout_fraction > 0, or use likelihood='none'")
        return {"value": model.resolve_threshold(None), "kind": "calibrated",
                "source": f"{model.threshold_source} (the default for an unnormalised log_prob, such as the "
                          f"{model.name}'s: ARQ's log(e^-5) is a log-density)"}
    if threshold is None:
        return {"value": ARQ_LOG_THRESHOLD, "kind": "absolute", "source": "ARQ default log(e^-5)"}
    if isinstance(threshold, str) and threshold == "calibrated":
        return {"value": model.resolve_threshold(None), "kind": "calibrated", "source": model.threshold_source}
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a log-density (a number), 'calibrated' or None, got {threshold!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"threshold must be finite, got {value}")
    return {"value": value, "kind": "absolute", "source": "user"}


def _draw(model: BehaviorModel, obs: torch.Tensor, n: int, likelihood: str,
          sampler_options: dict[str, Any], log_prob_options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, n, A] clipped samples and the [B, n] log-probs of exactly those actions."""
    if likelihood == "joint":
        return model.sample_and_log_prob(obs, n, **sampler_options)
    actions = model.sample(obs, n, **sampler_options)
    if likelihood == "none":
        return actions, torch.full(actions.shape[:2], math.nan, device=actions.device)
    flat = model.log_prob(obs.repeat_interleave(n, dim=0), actions.reshape(-1, actions.shape[-1]), **log_prob_options)
    return actions, flat.reshape(actions.shape[:2])


def _chunk_path(work: Path, start: int, stop: int) -> Path:
    return work / f"chunk-{start:012d}-{stop:012d}.npz"


def _resume_decision(work: Path, manifest: dict[str, Any], overwrite: bool) -> str:
    """What to do with ``work``: "new" (nothing there), "resume" (started with these settings),
    or "restart" (other settings, but discarding it loses nothing drawn, or --force says so).
    Refuses to throw away finished chunks of another model or other settings without --force."""
    path = work / MANIFEST_FILE
    if not path.is_file():
        return "new"
    started = json.loads(path.read_text())
    differing = sorted(key for key in manifest if key not in ("model_dir",) and started.get(key) != manifest[key])
    if not differing:
        return "resume"
    # A run refused at its first draw (say, an unknown sampler name) leaves a manifest but no chunk; the
    # corrected command must not be held to the refused settings.
    if overwrite or not any(work.glob("chunk-*.npz")):
        return "restart"
    if "model_fingerprint" in differing:
        raise ArtefactMismatchError(
            f"the model directory {manifest['model_dir']} changed since this cache was started (fingerprint "
            f"then {started['model_fingerprint']}, now {manifest['model_fingerprint']}); its finished chunks "
            f"in {work} belong to the old model. Pass --force (or delete {work}) to start over with the new model.")
    detail = ", ".join(f"{key}: then {started.get(key)!r}, now {manifest[key]!r}" for key in differing)
    raise ConfigError(f"{work} holds an unfinished cache built with other settings ({detail}). Rerun with "
                      f"the same settings to resume it, or pass --force (or delete {work}) to start over.")


def default_chunk_states(batch_states: int, num_samples: int, act_dim: int) -> int:
    """Rows per chunk: at most ``CHUNK_MAX_BATCHES`` batches and about ``CHUNK_TARGET_BYTES``.

    Small chunks bound the work an interruption loses; the byte cap bounds memory.
    """
    row_bytes = num_samples * (4 * act_dim + 5)  # candidates + log-prob + mask
    return batch_states * max(1, min(CHUNK_MAX_BATCHES, CHUNK_TARGET_BYTES // (batch_states * row_bytes)))


def settings_path(out: Path) -> Path:
    """``<out>.json``: a copy of the cache's ``metadata_json`` (its settings, fingerprints and
    library version) beside it, readable without NumPy. The npz's own copy is what consumers check."""
    return out.with_name(out.name + ".json")


def check_cache_out(out: Path, overwrite: bool) -> None:
    """Refuse an unusable ``out`` path; cheap, so ``bm sample-cache`` checks it before loading anything."""
    if out.suffix != ".npz":
        raise ConfigError(f"--out must end in .npz, got {out}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; delete it, choose another --out, or pass --force")


@torch.no_grad()
def build_sample_cache(model_dir: str | os.PathLike, transitions: Transitions, out: str | os.PathLike, *,
                       num_samples: int = 30, threshold: float | str | None = None,
                       likelihood: str = "joint", sampler_options: dict[str, Any] | None = None,
                       log_prob_options: dict[str, Any] | None = None, batch_states: int = 256,
                       chunk_states: int | None = None, device: str | torch.device = "cpu", seed: int = 0,
                       dtype: str = "float32", overwrite: bool = False, progress: bool = True) -> Path | None:
    """Draw ``num_samples`` candidates at every dataset state and write the cache to ``out``.

    Args:
        model_dir: a fitted behavior-model directory (any backend).
        threshold: a log-density (in the units of the model's ``log_prob``), ``"calibrated"`` (the
            model's stored threshold) or None for ARQ's default log(e^-5) = -5, or for the
            calibrated one when ``log_prob`` is unnormalised (the GAN); must be None with
            ``likelihood="none"``.
        likelihood: "joint" (``sample_and_log_prob``), "separate" (``sample`` then
            ``log_prob(**log_prob_options)``) or "none" (no log-probs; every candidate kept).
        sampler_options: passed to ``sample``/``sample_and_log_prob``, e.g. ``{"sampler": "fast"}``.
        batch_states: states per model call, and the RNG block size (see the module docstring).
        chunk_states: states per resumable chunk file; a multiple of ``batch_states``.

    Resumes an interrupted run from ``<out>.work/``. Under ``torchrun`` every rank calls this;
    rank 0 returns the output path, the other ranks None.
    """
    started = time.perf_counter()
    out, model_dir = Path(out), Path(model_dir).resolve()
    check_cache_out(out, overwrite)
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if num_samples < 1 or batch_states < 1 or seed < 0:
        raise ConfigError(f"need num_samples >= 1, batch_states >= 1 and seed >= 0; got {num_samples}, "
                          f"{batch_states}, {seed}")
    transitions.require_unit_action_box()
    sampler_options, log_prob_options = dict(sampler_options or {}), dict(log_prob_options or {})
    if log_prob_options and likelihood != "separate":
        raise ConfigError(f"log_prob options {sorted(log_prob_options)} apply only to likelihood='separate' "
                          f"(a log_prob pass after sampling); with {likelihood!r} they would be ignored")

    ranks = init_distributed()
    device = rank_device(device, ranks)
    from behavior_models.registry import load  # lazily: registry imports backends on demand

    with torch.random.fork_rng(devices=[]):  # a backend's constructor draws initial weights the load replaces
        model = load(model_dir, device=device)
    if model.obs_dim != transitions.obs_dim or model.act_dim != transitions.act_dim:
        raise ArtefactMismatchError(
            f"the model in {model_dir} maps {model.obs_dim}-d states to {model.act_dim}-d actions, but dataset "
            f"{transitions.dataset_id} has {transitions.obs_dim}-d states and {transitions.act_dim}-d actions")
    if model.dataset_fingerprint and model.dataset_fingerprint != transitions.fingerprint:
        raise ArtefactMismatchError(
            f"the model in {model_dir} was fitted on dataset {model.dataset_id} (fingerprint "
            f"{model.dataset_fingerprint}), not on {transitions.dataset_id} (fingerprint {transitions.fingerprint}); "
            "ARQ needs the behaviour model of the dataset it trains on: fit one with `bm fit` on this dataset")
    model.check_options("sample", sampler_options)
    model.check_options("log_prob", log_prob_options)
    threshold_info = _parse_threshold(model, threshold, likelihood)
    states, obs_row, next_obs_row = cache_states(transitions)
    num_states = len(states)
    chunk_states = chunk_states or default_chunk_states(batch_states, num_samples, model.act_dim)
    if chunk_states % batch_states:
        raise ConfigError(f"chunk_states ({chunk_states}) must be a multiple of batch_states ({batch_states})")

    manifest = {
        "format_version": FORMAT_VERSION, "dataset_id": transitions.dataset_id,
        "dataset_fingerprint": transitions.fingerprint, "goal_switch": transitions.info.goal_switch,
        "num_transitions": len(transitions), "num_states": num_states, "model_dir": str(model_dir),
        "model_fingerprint": fingerprint_directory(model_dir),
        "backend": model.name, "log_prob_kind": model.log_prob_kind, "num_samples": int(num_samples),
        "threshold": threshold_info, "likelihood": likelihood, "sampler_options": sampler_options,
        "log_prob_options": log_prob_options, "seed": int(seed), "batch_states": int(batch_states),
        "chunk_states": int(chunk_states), "rng": RNG_SCHEME, "device_type": device.type, "dtype": dtype,
    }
    work = out.with_name(out.name + ".work")
    decision = _resume_decision(work, json.loads(json.dumps(manifest)), overwrite)  # every rank, before any barrier
    if ranks.rank == 0 and decision != "resume":
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_json_atomic(work / MANIFEST_FILE, manifest)
    ranks.barrier()

    chunks = [(start, min(start + chunk_states, num_states)) for start in range(0, num_states, chunk_states)]
    mine = [(start, stop) for index, (start, stop) in enumerate(chunks)
            if index % ranks.world_size == ranks.rank and not _chunk_path(work, start, stop).is_file()]
    bar = tqdm(total=sum(stop - start for start, stop in mine) * num_samples, unit="sample", unit_scale=True,
               desc=f"sample-cache {model.name}", disable=not progress or ranks.rank != 0, dynamic_ncols=True)
    # The GPU the draws run on: a bare "cuda" is the current device, not necessarily GPU 0.
    fork_devices = ([device.index if device.index is not None else torch.cuda.current_device()]
                    if device.type == "cuda" else [])
    for start, stop in mine:
        parts = []
        for begin in range(start, stop, batch_states):
            obs = torch.as_tensor(states[begin:begin + batch_states], dtype=torch.float32, device=device)
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(block_seed(seed, begin // batch_states))
                parts.append(_draw(model, obs, num_samples, likelihood, sampler_options, log_prob_options))
            bar.update(obs.shape[0] * num_samples)
        actions = torch.cat([p[0] for p in parts]).float()
        log_probs = torch.cat([p[1] for p in parts]).float()
        if likelihood == "none":
            in_support = torch.ones_like(log_probs, dtype=torch.bool)
        else:
            in_support = log_probs >= threshold_info["value"]
        boundary = (actions.abs() >= 1.0).any(-1).sum()
        _write_chunk(_chunk_path(work, start, stop), candidates=actions.cpu().numpy().astype(DTYPES[dtype]),
                     log_probs=log_probs.cpu().numpy(), in_support=in_support.cpu().numpy(),
                     boundary_samples=boundary.cpu().numpy())
    bar.close()
    ranks.barrier()
    if ranks.rank != 0:
        return None
    return _merge(work, out, chunks, manifest, obs_row, next_obs_row, model.act_dim,
                  world_size=ranks.world_size, elapsed=time.perf_counter() - started)


def _write_chunk(path: Path, **arrays: np.ndarray) -> None:
    save_npz_atomic(path, **arrays)


def _merge(work: Path, out: Path, chunks: list[tuple[int, int]], manifest: dict[str, Any], obs_row: np.ndarray,
           next_obs_row: np.ndarray, act_dim: int, world_size: int, elapsed: float) -> Path:
    """Gather the chunk files into the output arrays and write ``out`` atomically."""
    num_states, num_samples = manifest["num_states"], manifest["num_samples"]
    candidates = np.empty((num_states, num_samples, act_dim), DTYPES[manifest["dtype"]])
    log_probs = np.empty((num_states, num_samples), np.float32)
    in_support = np.empty((num_states, num_samples), bool)
    boundary = 0
    for start, stop in chunks:
        path = _chunk_path(work, start, stop)
        if not path.is_file():
            raise BehaviorModelsError(f"chunk {path.name} is missing from {work}; rerun the same command to finish it")
        chunk = load_npz(path)
        candidates[start:stop], log_probs[start:stop] = chunk["candidates"], chunk["log_probs"]
        in_support[start:stop] = chunk["in_support"]
        boundary += int(chunk["boundary_samples"])
    metadata = {key: value for key, value in manifest.items() if key != "chunk_states"}
    metadata.update(log_probs_scored_after_clipping=manifest["likelihood"] != "none", boundary_samples=boundary,
                    library_version=__version__, world_size=world_size, elapsed_seconds=round(elapsed, 3),
                    created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # The copy first: an interruption between the two leaves at worst a copy without its cache
    # (the rerun's merge writes both), never a cache without its copy.
    write_json_atomic(settings_path(out), metadata)
    save_npz_atomic(out, candidates=candidates, log_probs=log_probs, in_support=in_support, obs_row=obs_row,
                    next_obs_row=next_obs_row, metadata_json=np.array(json.dumps(metadata, sort_keys=True)))
    shutil.rmtree(work)
    return out
