"""Offline RL benchmark: algorithm x dataset x seed, normalised score mean +- std and steps/s.

Run by hand (not by the tests). The configuration of the README's tables (its ``$B``):

    .venv/bin/python benchmarks/offline_rl.py --steps 20000 --arq-behavior score --spot-behavior cvae \
        --fit-steps 5000 --cache-samples 10 --cache-likelihood none --cache-sampler fast \
        --algos bc,arq,spot --datasets pointmaze-umaze-biased,pointmaze-medium-biased --seeds 0,1,2

(the script's own defaults fit the behaviour models 20,000 steps and draw N = 30 candidates with
the score model's default sampler and joint log-probs, which takes far longer).

Everything is resumable and finished work is skipped, so the same command continues an
interrupted benchmark: datasets are built once (``rl.datasets.make_dataset``); behavior models
are fitted once per (dataset, backend) under OUT/models/ (the fit loop resumes from its
checkpoint); sample caches are built once under OUT/caches/ (``build_sample_cache`` resumes
from its work directory); a run whose ``summary.json`` exists with the requested step count is
skipped, and one with checkpoints resumes bit for bit. A model, cache or finished run is reused
only if it was made with this invocation's settings (the model's fit steps; the cache's model,
likelihood, sampler options and goal-switch view, the one ARQ trains on; the run's recorded
config, dataset and behaviour fingerprints, compared as a resume compares them): training
refuses one made otherwise, and ``--report`` leaves such runs out of its tables and names them.
``--report`` prints the table of what has finished under ``--out`` and trains nothing (so
several invocations, e.g. one per CPU core, can fill one output directory and be tabulated
together); ``--report --curves`` adds each method's mean learning curve (the periodic
evaluations in every finished run's metrics.csv).

Ten evaluation episodes per seed leave the table's per-seed scores with a standard error of
several points on the mazes. ``--final-episodes N`` scores every finished run's final
checkpoint again on N episodes, the same episodes for every run of a dataset (reset seeds
``--final-seed`` + i), and prints that table too; the result is kept in the run's
``final_eval.json``, so it is computed once. ``--final-acting ALGO.FIELD=VALUE`` adds a row that
scores the same finished runs acting otherwise (an acting field, ``rl eval --set``), e.g.
``arq.policy=implicit``: Eq. 6's policy on the critic that was trained beside the AWR policy
(kept in ``final_eval[policy=implicit].json``). ``--set ALGO.FIELD=VALUE`` overrides one field of
an algorithm's config for a diagnostic beside the table (give it its own ``--out``).

Defaults are fixed before comparing and are the same on every dataset (no per-dataset tuning):
each algorithm's config defaults (``rl/algos/*.py``), ``--eval-episodes`` evaluation episodes at
the end, ``reward_transform=auto`` (r - 1 on the maze datasets), ``goal_switch=auto`` (goal
switches relabelled on the maze datasets, rl.core.rewards). ARQ's cache comes from
``--arq-behavior`` (the paper's score model by default, sampled with ``--cache-sampler``) with
``--cache-samples`` candidates and the absolute threshold log(e^-5) = -5; SPOT's density from
``--spot-behavior`` (the CVAE by default, its one-sample ELBO). The table prints, per
(algorithm, dataset): mean +- std over seeds of the per-seed mean normalised score, the
number of finished seeds, and the mean training steps/s.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

BEHAVIOR_ALGOS = {"arq": "cache", "spot": "model"}  # what --behavior each algorithm needs
# Issue 8: BEAR(++) samples a behavior model (the --spot-behavior backend, CVAE by default: BEAR's own
# choice); TD3+BC(++) and DASCO need none.
BEHAVIOR_ALGOS.update({"bear": "model", "bear++": "model"})


def parse_options(items: list[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def model_path(root: Path, dataset: str, backend: str) -> Path:
    return root / "models" / dataset / backend


def cache_path(root: Path, dataset: str, model_dir: Path, samples: int, goal_switch: str) -> Path:
    """The cache's file; one of the ``relabel`` goal-switch view is marked so (caches of ``keep``
    keep the name they had before the view existed)."""
    view = "-relabel" if goal_switch == "relabel" else ""
    return root / "caches" / f"{dataset}-{model_dir.name}-N{samples}{view}.npz"


def cache_goal_switch(dataset: str, overrides: dict[str, Any]) -> str:
    """The goal-switch view the cache-based algorithm trains on, so its cache is built on it too."""
    from rl.core.rewards import resolve_goal_switch

    return resolve_goal_switch(overrides.get("goal_switch", "auto"), dataset_identity(dataset)[0])


def behavior_paths(algo: str, dataset: str, root: Path, args: argparse.Namespace,
                   overrides: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """(sample cache, behavior model) that ``algo`` (with its --set ``overrides``) is given on
    ``dataset``: paths only, nothing built."""
    kind = BEHAVIOR_ALGOS.get(algo)
    if kind == "cache":
        model = model_path(root, dataset, args.arq_behavior)
        return cache_path(root, dataset, model, args.cache_samples, cache_goal_switch(dataset, overrides)), model
    if kind == "model":
        return None, model_path(root, dataset, args.spot_behavior)
    return None, None


def ensure_model(dataset: str, backend: str, root: Path, fit_steps: int, seed: int, device: str,
                 progress: bool = True) -> Path:
    """A fitted behavior model of ``backend`` on ``dataset`` (fitted once, resumed if interrupted)."""
    import behavior_models
    from behavior_models.base import MODEL_FILE
    from behavior_models.data import load_transitions

    out = model_path(root, dataset, backend)
    if (out / MODEL_FILE).is_file():
        check_model(out, fit_steps, seed)
        return out
    cls = behavior_models.backend_class(backend)
    config = cls.config_class(steps=fit_steps, seed=seed)
    print(f"[fit] {backend} on {dataset}: {fit_steps} steps -> {out}", flush=True)
    cls.fit(load_transitions(dataset), config, out_dir=out, device=device, resume=out.exists(), progress=progress)
    return out


def ensure_cache(dataset: str, model_dir: Path, root: Path, samples: int, sampler_options: dict[str, Any],
                 likelihood: str, device: str, goal_switch: str, progress: bool = True) -> Path:
    from behavior_models.cache import build_sample_cache
    from behavior_models.data import load_transitions
    from rl.core.rewards import goal_switch_view

    out = cache_path(root, dataset, model_dir, samples, goal_switch)
    if out.is_file():
        check_cache(out, model_dir, likelihood, sampler_options, goal_switch)
        return out
    print(f"[cache] {model_dir} x {samples} samples, goal switches {goal_switch} -> {out}", flush=True)
    build_sample_cache(model_dir, goal_switch_view(load_transitions(dataset), goal_switch), out, num_samples=samples,
                       likelihood=likelihood, sampler_options=sampler_options, device=device, progress=progress)
    return out


def check_model(model_dir: Path, fit_steps: int, seed: int) -> None:
    """Refuse a behavior model fitted with another --fit-steps (or seed) than asked for."""
    from behavior_models.base import CONFIG_FILE

    config = json.loads((model_dir / CONFIG_FILE).read_text())
    if (config["steps"], config["seed"]) != (fit_steps, seed):
        raise SystemExit(f"{model_dir} was fitted for {config['steps']} steps (seed {config['seed']}), not --fit-steps "
                         f"{fit_steps} (seed {seed}); give other fit settings their own --out")


def check_cache(path: Path, model_dir: Path, likelihood: str, sampler_options: dict[str, Any],
                goal_switch: str) -> None:
    """Refuse a sample cache drawn from another model, with other --cache-likelihood/-sampler/-option,
    or on another view of the goal switches."""
    from behavior_models.io import fingerprint_directory

    with np.load(path, allow_pickle=False) as arrays:
        metadata = json.loads(str(arrays["metadata_json"]))
    recorded = (metadata["likelihood"], metadata["sampler_options"], metadata["model_fingerprint"],
                metadata.get("goal_switch", "keep"))
    wanted = (likelihood, json.loads(json.dumps(sampler_options)), fingerprint_directory(model_dir), goal_switch)
    if recorded != wanted:
        raise SystemExit(f"{path} holds a cache of likelihood {recorded[0]!r}, sampler options {recorded[1]}, model "
                         f"fingerprint {recorded[2]}, goal switches {recorded[3]!r}; asked for {wanted[0]!r}, "
                         f"{wanted[1]}, {wanted[2]} ({model_dir}), {wanted[3]!r}. Give other cache settings their "
                         "own --out")


def run_dir(root: Path, algo: str, dataset: str, seed: int) -> Path:
    return root / "runs" / algo / dataset / f"seed{seed}"


def parse_algo_item(option: str, item: str, algos: list[str], comma_list: bool = False) -> tuple[str, dict[str, Any]]:
    """``ALGO.FIELD=VALUE`` (``ALGO.FIELD=VALUE,FIELD=VALUE`` with ``comma_list``) -> (algo, {field:
    value}), each value typed like the field (as ``rl train --set``). Exits naming ``option`` and
    ``item`` on a malformed item, an algorithm not in --algos or a value of the wrong type."""
    from behavior_models.errors import ConfigError
    from cli.rl_train import parse_override
    from rl.algos import algorithm_class

    algo, _, assignments = item.partition(".")
    if not assignments or algo not in algos:
        raise SystemExit(f"{option} {item!r}: write ALGO.FIELD=VALUE with ALGO one of --algos ({', '.join(algos)})")
    try:
        config_class = algorithm_class(algo).config_class
        parts = assignments.split(",") if comma_list else [assignments]
        return algo, dict(parse_override(config_class, part) for part in parts)
    except ConfigError as error:
        raise SystemExit(f"{option} {item!r}: {error}") from None


def parse_overrides(items: list[str], algos: list[str]) -> dict[str, dict[str, Any]]:
    """``--set ALGO.FIELD=VALUE`` items -> {algo: {field: value}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        algo, values = parse_algo_item("--set", item, algos)
        overrides.setdefault(algo, {}).update(values)
    return overrides


def parse_acting(items: list[str], algos: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``--final-acting ALGO.FIELD=VALUE[,FIELD=VALUE]`` items -> [(algo, {field: value})], one
    extra final-table row each; only acting fields (``Algorithm.acting_fields``) are accepted."""
    from behavior_models.errors import ConfigError
    from rl.algos import algorithm_class

    rows = []
    for item in items:
        algo, acting = parse_algo_item("--final-acting", item, algos, comma_list=True)
        algo_cls = algorithm_class(algo)
        try:
            algo_cls.with_acting(algo_cls.config_class(), acting)
        except ConfigError as error:
            raise SystemExit(f"--final-acting {item!r}: {error}") from None
        rows.append((algo, acting))
    return rows


def run_config(args: argparse.Namespace, seed: int):
    from rl.core.trainer import RunConfig

    return RunConfig(steps=args.steps, seed=seed, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                     checkpoint_every=args.checkpoint_every)


@functools.cache
def dataset_identity(dataset: str) -> tuple[str, str, list[float] | None]:
    """(dataset id, content fingerprint, reference scores [min, max] or None) of a --datasets name."""
    from behavior_models.data import load_transitions

    transitions = load_transitions(dataset)
    info = transitions.info
    references = [float(info.ref_min_score), float(info.ref_max_score)] if info.has_reference_scores else None
    return transitions.dataset_id, transitions.fingerprint, references


def reference_change(result: dict[str, Any], dataset: str) -> list[str]:
    """The dataset's reference scores, if ``result`` (a summary or final evaluation) recorded
    others: a recipe rebuilt with other reference episodes keeps its fingerprint, not its scale.
    Results from before the scores were recorded cannot be checked and pass."""
    recorded, current = result.get("reference_scores"), dataset_identity(dataset)[2]
    return [] if recorded is None or recorded == current else [f"reference scores: {recorded} -> {current}"]


def recorded_changes(out: Path, algo: str, dataset: str, seed: int, args: argparse.Namespace,
                     overrides: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """How the finished run in ``out`` (its config.json and ``summary``) differs from the run this
    invocation would train there: algorithm config with the --set overrides, run config, dataset
    content, behaviour artefacts (``rl.core.trainer.settings_changes``, the check a resume makes)
    and reference scores. [] if the same."""
    from behavior_models.io import config_to_dict
    from rl.algos import algorithm_class
    from rl.core.behavior import describe_behavior
    from rl.core.trainer import resolve_algo_config, settings_changes

    saved = json.loads((out / "config.json").read_text())
    dataset_id, fingerprint, _ = dataset_identity(dataset)
    algo_config = resolve_algo_config(algo, algorithm_class(algo).config_class(**overrides), dataset_id, args.steps)
    cache, model = behavior_paths(algo, dataset, Path(args.out), args, overrides)
    if cache is not None:  # a cache-based run records a model only if it acts with one (found via the cache)
        recorded_model = (saved.get("behavior") or {}).get("model_dir")
        model = Path(recorded_model["path"]) if recorded_model else None
    missing = [str(path) for path in (cache, model) if path is not None and not path.exists()]
    if missing:
        return [f"its behaviour artefacts {missing} are gone"]
    wanted = {"algorithm": algo, "dataset_fingerprint": fingerprint, "algo": config_to_dict(algo_config),
              "run": config_to_dict(run_config(args, seed)), "behavior": describe_behavior(cache, model)}
    return settings_changes(saved, wanted) + reference_change(summary, dataset)


def run_one(algo: str, dataset: str, seed: int, args: argparse.Namespace, behavior: str | None,
            overrides: dict[str, Any]) -> dict[str, Any]:
    from rl.algos import algorithm_class
    from rl.core.trainer import train

    out = run_dir(Path(args.out), algo, dataset, seed)
    summary = finished_summary(out, args.steps, args.eval_episodes)
    if summary is not None:
        changes = recorded_changes(out, algo, dataset, seed, args, overrides, summary)
        if changes:
            raise SystemExit(f"{out} finished with other settings ({'; '.join(changes)}); give this configuration "
                             "its own --out")
        return summary
    algo_config = algorithm_class(algo).config_class(**overrides) if overrides else None
    # A run stopped before its first checkpoint left only its config: resume=True restarts it from step 0.
    has_checkpoint = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("*.pt"))
    print(f"[train] {algo} {dataset} seed {seed}{' (resume)' if has_checkpoint else ''} -> {out}", flush=True)
    return train(algo, dataset, out, algo_config=algo_config, run_config=run_config(args, seed), behavior=behavior,
                 device=args.device, resume=(out / "config.json").is_file(), progress=not args.no_progress,
                 echo=lambda line: print(line, flush=True))


def final_evaluation(out: Path, dataset: str, episodes: int, seed: int, device: str,
                     acting: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's final checkpoint scored on ``episodes`` episodes (reset seeds seed + i), acting with
    the acting fields ``acting`` if given, read from ``final_eval.json`` (``final_eval[<acting>].json``)
    when it already holds exactly that evaluation, normalised with the dataset's current references."""
    from behavior_models.io import write_json_atomic
    from rl.core.trainer import acting_label, checkpoint_paths, load_run

    path = out / (f"final_eval[{acting_label(acting)}].json" if acting else "final_eval.json")
    checkpoint = checkpoint_paths(out)[-1].name
    if path.is_file():
        cached = json.loads(path.read_text())
        same = (cached["episodes"], cached["seed"], cached["checkpoint"]) == (episodes, seed, checkpoint)
        if same and not reference_change(cached, dataset):
            return cached
    print(f"[final] {out}{f' acting with {acting_label(acting)}' if acting else ''}: {episodes} episodes", flush=True)
    result = load_run(out, device=device, acting=acting).evaluate(episodes, seed=seed)
    summary = {**result.summary(), "seed": seed, "checkpoint": checkpoint, "acting": acting or {}}
    write_json_atomic(path, summary)
    return summary


def finished_summary(out: Path, steps: int, episodes: int) -> dict[str, Any] | None:
    """The run's summary.json if it finished ``steps`` steps with ``episodes`` evaluation episodes
    and its newest checkpoint is of that step."""
    from rl.core.trainer import checkpoint_paths

    path = out / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    checkpoints = checkpoint_paths(out)
    newest = checkpoints[-1].name if checkpoints else None
    finished = summary["steps"] == steps and summary.get("episodes") == episodes
    return summary if finished and newest == f"step_{steps:08d}.pt" else None


def table(results: dict[tuple[str, str], list[dict[str, Any]]], algos: list[str], datasets: list[str],
          seeds: int, steps: int, what: str = "") -> str:
    """Markdown: per (algorithm, dataset) the mean +- std over seeds of each seed's mean normalised
    score (numpy's population std, ddof 0, as the tables always were), the per-seed scores, how many
    seeds finished and the mean training steps/s."""
    lines = [f"steps {steps}{what}; mean ± std over seeds (population std, ddof 0) of each seed's mean normalised "
             "score [per seed]", "",
             "| algorithm | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for algo in algos:
        cells = []
        for dataset in datasets:
            done = results.get((algo, dataset), [])
            if not done:
                cells.append("not run")
                continue
            scores = np.array([s["normalized_score_mean"] for s in done])
            speed = np.mean([s["steps_per_second"] for s in done if s.get("steps_per_second")])
            per_seed = " / ".join(f"{score:.1f}" for score in scores)
            cells.append(f"{scores.mean():.1f} ± {scores.std():.1f} [{per_seed}] ({len(done)}/{seeds} seeds, "
                         f"{speed:.0f} steps/s)")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finished_runs(root: Path, algos: list[str], datasets: list[str], seeds: list[int], args: argparse.Namespace,
                  overrides: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, Path, dict[str, Any]]]:
    """(algorithm, dataset, run directory, summary) of every run under ``root`` that finished --steps
    steps with --eval-episodes episodes with this invocation's settings. A finished run recorded
    with other settings is left out and named on stderr."""
    for algo in algos:
        for dataset in datasets:
            for seed in seeds:
                out = run_dir(root, algo, dataset, seed)
                summary = finished_summary(out, args.steps, args.eval_episodes)
                if summary is None:
                    continue
                changes = recorded_changes(out, algo, dataset, seed, args, overrides.get(algo, {}), summary)
                if not changes:
                    yield algo, dataset, out, summary
                else:
                    print(f"[left out] {out}: finished with other settings ({'; '.join(changes)})", file=sys.stderr)


def final_table(runs: list[tuple[str, str, Path, dict[str, Any]]], algos: list[str], datasets: list[str],
                seeds: list[int], args: argparse.Namespace) -> str:
    """The table again, each of the finished ``runs`` scored by ``final_evaluation`` on
    --final-episodes episodes, plus one row per --final-acting item."""
    from rl.core.trainer import acting_label

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows, scorings = list(algos), [(algo, algo, None) for algo in algos]  # (table row, algorithm, acting)
    for algo, acting in args.final_acting:
        rows.append(f"{algo} [{acting_label(acting)}]")
        scorings.append((rows[-1], algo, acting))
    for row, algo, acting in scorings:
        for _, dataset, out, summary in (run for run in runs if run[0] == algo):
            final = final_evaluation(out, dataset, args.final_episodes, args.final_seed, args.device, acting)
            results.setdefault((row, dataset), []).append(
                {**summary, "normalized_score_mean": final["normalized_score_mean"]})
    what = (f", final checkpoint scored on {args.final_episodes} episodes (the same for every run of a dataset, "
            f"reset seeds {args.final_seed} + i)")
    return table(results, rows, datasets, len(seeds), args.steps, what)


def learning_curves(runs: list[tuple[str, str, Path, dict[str, Any]]], datasets: list[str]) -> str:
    """Markdown: per (algorithm, dataset) the mean over the table's finished ``runs`` of the
    normalised score at every periodic evaluation, read from each run's metrics.csv: whether a
    method has stopped improving at the step budget is part of what the final table means."""
    lines = []
    for dataset in datasets:
        curves: dict[str, dict[int, list[float]]] = {}
        for algo, run_dataset, out, _ in runs:
            if run_dataset == dataset:
                with (out / "metrics.csv").open(newline="") as handle:
                    for row in csv.DictReader(handle):
                        if row.get("eval/normalized_score_mean"):
                            curves.setdefault(algo, {}).setdefault(int(row["step"]), []).append(
                                float(row["eval/normalized_score_mean"]))
        if not curves:
            continue
        steps = sorted({step for curve in curves.values() for step in curve})
        lines += ["", f"{dataset}: mean normalised score over finished seeds at each evaluation (seeds)", "",
                  "| algorithm | " + " | ".join(str(step) for step in steps) + " |", "|---|" + "---|" * len(steps)]
        for algo, curve in curves.items():
            cells = [f"{np.mean(curve[step]):.1f} ({len(curve[step])})" if step in curve else "" for step in steps]
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from rl.algos import ALGORITHMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--algos", default="bc,arq,spot",
                        help=f"comma-separated, of {', '.join(ALGORITHMS)}")
    parser.add_argument("--datasets", default="pointmaze-umaze-biased,pointmaze-medium-biased",
                        help="comma-separated dataset names: built-in recipes (built if missing) or datasets on disk")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds, one run each")
    parser.add_argument("--steps", type=int, default=20_000, help="training steps (updates) per run")
    parser.add_argument("--eval-every", type=int, default=5_000,
                        help="training steps between periodic evaluations (shown by --curves); 0: only the final one")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="episodes per evaluation, periodic and final (the table scores the final one)")
    parser.add_argument("--checkpoint-every", type=int, default=1_000,
                        help="training steps between checkpoints (resume points); the last step is always saved")
    parser.add_argument("--arq-behavior", default="score", help="backend of ARQ's sample cache")
    parser.add_argument("--spot-behavior", default="cvae", help="backend of SPOT's density")
    parser.add_argument("--fit-steps", type=int, default=20_000, help="gradient steps of each behavior-model fit")
    parser.add_argument("--cache-samples", type=int, default=30, help="ARQ's N (seed 002: 30)")
    parser.add_argument("--cache-likelihood", default="joint", choices=("joint", "separate", "none"),
                        help="log-probs of ARQ's cache: joint (sample_and_log_prob, one pass), separate (sample, "
                             "then log_prob), none (no log-probs: every candidate kept)")
    parser.add_argument("--cache-sampler", default=None,
                        help="sampler option of the cache (score model: fast, ode or pc); unset: the backend's")
    parser.add_argument("--cache-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra sampler option, e.g. steps=10")
    parser.add_argument("--out", default="benchmark_output/offline_rl",
                        help="output directory: models/, caches/, runs/ and table.md")
    parser.add_argument("--device", default="cpu", help="torch device of fits, caches and training, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (dataset builds, behavior-model fits, sample caches and training)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ALGO.FIELD=VALUE",
                        help="override a field of one algorithm's config, e.g. bc.lr=3e-4 (repeatable): for a "
                             "diagnostic beside the table, in its own --out")
    parser.add_argument("--final-episodes", type=int, default=0,
                        help="also score each finished run's final checkpoint on this many episodes, the same "
                             "ones for every run of a dataset (kept in the run's final_eval.json); 0: off")
    parser.add_argument("--final-acting", action="append", default=[], metavar="ALGO.FIELD=VALUE[,FIELD=VALUE]",
                        help="with --final-episodes: one more final-table row per use, the same runs acting with "
                             "other acting fields, e.g. arq.policy=implicit (Eq. 6) or arq.policy=behavior (s_psi alone)")
    parser.add_argument("--final-seed", type=int, default=1_000_000,
                        help="reset seed of the first --final-episodes episode (episode i: seed + i)")
    parser.add_argument("--report", action="store_true",
                        help="print the table of the runs already finished under --out; train nothing (but "
                             "run the --final-episodes evaluations still missing)")
    parser.add_argument("--curves", action="store_true",
                        help="with --report: also the mean learning curve of each algorithm on each dataset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from behavior_models.data import is_local
    from rl.datasets import make_dataset

    algos, datasets = args.algos.split(","), args.datasets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = parse_overrides(args.overrides, algos)
    args.final_acting = parse_acting(args.final_acting, algos)
    if args.final_acting and not args.final_episodes:
        raise SystemExit("--final-acting adds rows to the --final-episodes table; give --final-episodes N too")
    root = Path(args.out)
    sampler_options = parse_options(args.cache_option)
    if args.cache_sampler:
        sampler_options["sampler"] = args.cache_sampler
    load = os.getloadavg()[0]
    print(f"# offline RL benchmark: {algos} x {datasets} x seeds {seeds}, {args.steps} steps; load average "
          f"{load:.1f} on {os.cpu_count()} cores", flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if args.report:
        for algo in algos:  # the behaviour artefacts the runs were trained on must be the ones asked for
            for dataset in datasets:
                cache, model = behavior_paths(algo, dataset, root, args, overrides.get(algo, {}))
                if model is not None and model.is_dir():
                    check_model(model, args.fit_steps, 0)
                if cache is not None and cache.is_file():
                    check_cache(cache, model, args.cache_likelihood, sampler_options,
                                cache_goal_switch(dataset, overrides.get(algo, {})))
        runs = list(finished_runs(root, algos, datasets, seeds, args, overrides))
        for algo, dataset, _, summary in runs:
            results.setdefault((algo, dataset), []).append(summary)
        print(table(results, algos, datasets, len(seeds), args.steps))
        if args.final_episodes:
            print("\n" + final_table(runs, algos, datasets, seeds, args))
        if args.curves:
            print(learning_curves(runs, datasets))
        return
    tic = time.perf_counter()
    for dataset in datasets:
        if not is_local(dataset):
            make_dataset(dataset, progress=not args.no_progress)
        for algo in algos:
            behavior = None
            if BEHAVIOR_ALGOS.get(algo) == "cache":
                model_dir = ensure_model(dataset, args.arq_behavior, root, args.fit_steps, 0, args.device,
                                         not args.no_progress)
                behavior = str(ensure_cache(dataset, model_dir, root, args.cache_samples, sampler_options,
                                            args.cache_likelihood, args.device,
                                            cache_goal_switch(dataset, overrides.get(algo, {})), not args.no_progress))
            elif BEHAVIOR_ALGOS.get(algo) == "model":
                behavior = str(ensure_model(dataset, args.spot_behavior, root, args.fit_steps, 0, args.device,
                                                not args.no_progress))
            for seed in seeds:
                summary = run_one(algo, dataset, seed, args, behavior, overrides.get(algo, {}))
                results.setdefault((algo, dataset), []).append(summary)
                print(f"[done] {algo} {dataset} seed {seed}: normalized_score {summary['normalized_score_mean']:.1f} "
                      f"± {summary['normalized_score_std']:.1f}, {summary['steps_per_second']:.1f} steps/s", flush=True)
    text = table(results, algos, datasets, len(seeds), args.steps)
    text += (f"\n\nARQ cache: {args.arq_behavior}, N = {args.cache_samples}, likelihood {args.cache_likelihood}, "
             f"sampler options {sampler_options or 'default'}; SPOT density: {args.spot_behavior}; behavior models fitted "
             f"for {args.fit_steps} steps; {args.eval_episodes} evaluation episodes per seed.")
    if overrides:
        text += f" Config overrides: {overrides}."
    if args.final_episodes:
        runs = list(finished_runs(root, algos, datasets, seeds, args, overrides))
        text += "\n\n" + final_table(runs, algos, datasets, seeds, args)
    from behavior_models.io import write_json_atomic, write_text_atomic

    # The command's settings beside the table they produced (the runs' own configs are in runs/).
    write_json_atomic(root / "table_args.json", {**vars(args), "out": str(root)})
    write_text_atomic(root / "table.md", text + "\n")
    print(f"\n{text}\n\n(wall time {time.perf_counter() - tic:.0f} s; table in {root / 'table.md'}, "
          f"its settings in {root / 'table_args.json'})")


if __name__ == "__main__":
    main()
