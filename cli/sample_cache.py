"""``bm sample-cache``: N behaviour-model candidates per dataset state, written once to an npz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.common import (DEVICE_HELP, GOAL_SWITCH_CHOICES, DefaultTextOption, device_option, ensure_dataset,
                        set_threads, threads_option)

# Share of states that keep no candidate in support above which the summary warns.
EMPTY_STATES_WARNING = 0.10


def _parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (numbers, true/false), else a string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=flag)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _parse_threshold(value: str | None) -> float | str | None:
    if value is None or value == "calibrated":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a log-density or 'calibrated', got {value!r}",
                                 param_hint="--threshold") from None


def _default_samplers() -> str:
    """--sampler's default for --help, read from the backends' configs (``default_sampler``)."""
    from behavior_models.registry import BACKENDS, backend_class

    own = {name: getattr(backend_class(name).config_class(), "default_sampler", None) for name in sorted(BACKENDS)}
    named = ", ".join(f"{name}: {sampler}" for name, sampler in own.items() if sampler is not None)
    return f"the model's own sampler; {named}" if named else "the model's own sampler"


def _resolved_sampler(model_dir: str, sampler_options: dict[str, Any]) -> tuple[str, str]:
    """(backend, the sampler the cache will use as a phrase), from --sampler (or --sampler-option
    sampler=...) or else the model's config.json, read without loading its weights; the build
    itself refuses a directory that is not a model."""
    from behavior_models.base import CONFIG_FILE, MODEL_FILE

    sampler = sampler_options.get("sampler")
    try:
        backend = json.loads((Path(model_dir) / MODEL_FILE).read_text())["backend"]
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError, KeyError):
        return "?", sampler or "the model's default"
    if sampler is not None:
        return backend, str(sampler)
    default = config.get("default_sampler")
    if default is None:
        return backend, "the backend's only sampler"
    if default == "pc":
        steps = sampler_options.get("steps", config.get("pc_steps", "?"))
        return backend, (f"pc, the model's default ({steps} predictor-corrector steps per sample: slow, about "
                         "8 samples/s on a CPU at 500; --sampler fast is tens of times faster)")
    return backend, f"{default}, the model's default"


def _summarise(path: Path, likelihood: str) -> None:
    """One line on what the written cache keeps, from its in_support array and metadata, and a
    warning when many states keep nothing (ARQ then falls back on every one of them)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:  # reads only the two members asked for
        in_support, metadata = data["in_support"], json.loads(str(data["metadata_json"]))
    states, candidates = in_support.shape
    kept, empty = float(in_support.mean()), float((~in_support.any(axis=1)).mean())
    threshold = metadata["threshold"]
    where = ("--likelihood none: every candidate kept" if likelihood == "none" else
             f"threshold {threshold['value']:.4g}, {threshold['kind']}: {threshold['source']}")
    click.echo(f"wrote {path}: {states} states x {candidates} candidates; {kept:.1%} of candidates in support, "
               f"{empty:.1%} of states with none in support ({where})")
    if empty > EMPTY_STATES_WARNING:
        click.echo(f"warning: {empty:.1%} of states keep no candidate in support (more than "
                   f"{EMPTY_STATES_WARNING:.0%}), so ARQ's target falls back on each of them. Try --threshold "
                   "calibrated (the model's own held-out threshold), --likelihood none (keep every candidate), "
                   "or a longer `bm fit --steps`.", err=True)


@click.command("sample-cache")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A fitted behavior-model directory (any backend).")
@click.option("--dataset", required=True, help="Dataset alias, recipe name or Minari id the model was fitted on.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file, ending in .npz.")
@click.option("--num-samples", type=click.IntRange(min=1), default=30, show_default=True, help="Candidates N per state (ARQ: 30).")
@click.option("--threshold", default=None, metavar="X|calibrated",
              help="Support threshold on the log-density: a number, or 'calibrated' for the model's stored "
                   "threshold. Default: ARQ's log(e^-5) = -5; 'calibrated' for the gan, whose log_prob is a "
                   "discriminator logit, not a log-density. Not with --likelihood none.")
@click.option("--likelihood", type=click.Choice(["joint", "separate", "none"]), default="joint", show_default=True,
              help="joint: samples and log-probs in one pass (sample_and_log_prob; the score model's ODE/fast "
                   "samplers); separate: sample, then a log_prob pass (e.g. after PC sampling); none: no log-probs, "
                   "every candidate kept.")
@click.option("--sampler", default=None, cls=DefaultTextOption, default_text=_default_samplers,
              help="Backend sampler, passed as sample(..., sampler=NAME) (score model: pc, ode, fast). The score "
                   "model's pc (500 predictor-corrector steps, then a dopri5 log-prob) is many times slower than fast "
                   "(18x in the README's table): use fast for caches.")
@click.option("--sampler-option", "sampler_option", multiple=True, metavar="KEY=VALUE",
              help="Extra keyword for sample/sample_and_log_prob (repeatable), e.g. steps=20.")
@click.option("--log-prob-option", "log_prob_option", multiple=True, metavar="KEY=VALUE",
              help="Extra keyword for log_prob with --likelihood separate (repeatable), e.g. solver=dopri5.")
@click.option("--batch-size", "batch_states", type=click.IntRange(min=1), default=256, show_default=True,
              help="States per model call (times N samples each); also the RNG block, so it changes the draws.")
@click.option("--chunk-states", default=None, type=click.IntRange(min=1),
              help="States per resumable chunk file, a multiple of --batch-size. Default: 16 batches "
                   "(fewer if that exceeds 64 MiB of output).")
@device_option(DEVICE_HELP[:-1] + "; under torchrun with several GPUs 'cuda' (and 'auto') means each rank's "
               "own GPU.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the candidates (keyed with each block of --batch-size rows).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage dtype of the candidates (log-probs stay float32).")
@click.option("--goal-switch", type=click.Choice(GOAL_SWITCH_CHOICES), default="auto", show_default=True,
              help="Which view of the goal switches (the step after a goal arrival, in data whose goal is "
                   "re-sampled on arrival) to cache states for; it must be the one the RL run trains on (its "
                   "goal_switch). relabel adds a row per switch for the next state with the goal kept; auto: "
                   "relabel on maze ids, keep elsewhere, as `rl train` resolves it.")
@click.option("--force", is_flag=True,
              help="Overwrite an existing --out, and discard an unfinished cache in OUT.work started with other "
                   "settings (one started with the same settings is resumed).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@threads_option(None)
def sample_cache(model_dir: str, dataset: str, out: str, num_samples: int, threshold: str | None, likelihood: str,
                 sampler: str | None, sampler_option: tuple[str, ...], log_prob_option: tuple[str, ...],
                 batch_states: int, chunk_states: int | None, device: str, seed: int, dtype: str, goal_switch: str,
                 force: bool, no_progress: bool, threads: int | None) -> None:
    """Draw N candidate actions at every state of DATASET from a behavior model, once.

    \b
    Each state is sampled once: an episode's observations and its final next observation.
    The npz holds candidates [M,N,A], log_probs [M,N], in_support [M,N], obs_row and
    next_obs_row (row of each transition's s and s'), and metadata_json (fingerprints,
    threshold, sampler settings). Format: behavior_models/cache.py.

    \b
    Interrupted runs resume from OUT.work/ (rerun the same command). Scale out with
    torchrun --standalone --nproc_per_node K -m cli.bm sample-cache ...
    Results equal a single-process run with the same --seed, --batch-size and device type.
    """
    from behavior_models.cache import build_sample_cache, check_cache_out, init_distributed
    from behavior_models.data import load_transitions
    from rl.core.rewards import goal_switch_view, resolve_goal_switch

    if chunk_states is not None and chunk_states % batch_states:
        nearest = max(batch_states, round(chunk_states / batch_states) * batch_states)
        raise click.BadParameter(f"{chunk_states} is not a multiple of --batch-size ({batch_states}); "
                                 f"use e.g. --chunk-states {nearest}, or leave it out", param_hint="--chunk-states")
    if threshold is not None and likelihood == "none":
        raise click.BadParameter("--likelihood none scores no candidate and keeps them all; drop --threshold, "
                                 "or choose --likelihood joint or separate", param_hint="--threshold")
    check_cache_out(Path(out), overwrite=force)  # before a recipe is built or a dataset loaded
    set_threads(threads)
    sampler_options = _parse_options(sampler_option, "--sampler-option")
    if sampler is not None:
        sampler_options["sampler"] = sampler
    log_prob_options = _parse_options(log_prob_option, "--log-prob-option")
    ranks = init_distributed()
    if ranks.rank == 0:  # a recipe is built once, not by every rank
        backend, resolved = _resolved_sampler(model_dir, sampler_options)
        click.echo(f"sample-cache: {backend} model, sampler {resolved}; likelihood {likelihood}, "
                   f"{num_samples} candidates per state, seed {seed}", err=True)
        ensure_dataset(dataset)
    ranks.barrier()
    transitions = load_transitions(dataset)
    transitions = goal_switch_view(transitions, resolve_goal_switch(goal_switch, transitions.dataset_id))
    result = build_sample_cache(
        model_dir, transitions, out, num_samples=num_samples, threshold=_parse_threshold(threshold),
        likelihood=likelihood, sampler_options=sampler_options, log_prob_options=log_prob_options,
        batch_states=batch_states, chunk_states=chunk_states, device=device, seed=seed, dtype=dtype,
        overwrite=force, progress=not no_progress)
    if result is not None:
        _summarise(Path(result), likelihood)
