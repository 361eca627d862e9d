"""``rl train ALGO`` and ``rl eval``: thin wrappers over :mod:`rl.core.trainer`.

Every algorithm gets the same options (dataset, steps, seed, device, output, resume,
evaluation) from :func:`train_command`, and ``--behavior`` (``--behavior-model``) only if it
reads a behaviour model (a sample cache); its own config fields are set with
``--set FIELD=VALUE`` (any field of its config dataclass, listed with their defaults at the end
of its --help) and, where the algorithm module defines ``PRESETS``, named variants with
``--variant``.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import click

from behavior_models.errors import ConfigError
from behavior_models.io import coerce_field, require_known_fields
from cli.common import (GOAL_SWITCH_CHOICES, DefaultTextOption, device_option, ensure_dataset,
                        refuse_resume_with_force, require_writable_dir, threads_option, write_figure_record)

REWARD_CHOICES = ("auto", "none", "minus_one", "return_range")
DEFAULT_STEPS = 20_000  # --steps of a new run (the benchmark's budget)
# Command-line options that set a config field, on every algorithm whose config has that field:
# seed 001's two options for BEAR and TD3+BC, and every algorithm's goal-switch view
# (``--set FIELD=VALUE`` reaches any field too).
FIELD_OPTIONS: dict[str, tuple[str, Any, str]] = {  # flag: (field, click type, help)
    "--gradient-penalty": ("gradient_penalty", float, "lambda_GP of seed 001's Eq. 8: one-sided penalty on "
                                                        "||dQ/da|| at random actions, every 5th step (0: off)."),
    "--constraint-relaxation/--no-constraint-relaxation": (
        "constraint_relaxation", bool, "Weight the constraint by seed 001's Eq. 10 (min-max normalised Q, no "
                                       "gradient); --no-constraint-relaxation turns it off in the ++ presets."),
    "--goal-switch": ("goal_switch", click.Choice(GOAL_SWITCH_CHOICES),
                      "The step after each goal arrival, in data whose goal is re-sampled on arrival: relabel gives "
                      "it back the goal it started with and the evaluation's reward for it, as the evaluation (one "
                      "goal) would record it; keep trains on it as recorded. auto: relabel on maze ids, keep "
                      "elsewhere. An ARQ cache must be drawn for the same view (bm sample-cache --goal-switch)."),
}


def parse_override(config_cls: type, assignment: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` -> (field, value as the field's declared type; see :func:`coerce_field`)."""
    if "=" not in assignment:
        raise ConfigError(f"--set takes FIELD=VALUE, got {assignment!r}")
    key, text = (part.strip() for part in assignment.split("=", 1))
    try:
        require_known_fields(config_cls, [key])
        return key, coerce_field(config_cls, key, text)
    except ConfigError as error:
        raise ConfigError(f"--set {assignment}: {error}") from None


def field_text(value: Any) -> str:
    """A config default written as ``--set`` reads it back (see :func:`coerce_field`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(field_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def set_example(config_cls: type) -> str:
    """``FIELD=DEFAULT`` of the algorithm's first own numeric field (else its first field), for --set's help."""
    from rl.algos.base import AlgoConfig

    defaults, shared = config_cls(), {f.name for f in dataclasses.fields(AlgoConfig)}
    fields = dataclasses.fields(config_cls)
    numeric = [f.name for f in fields if f.name not in shared and type(getattr(defaults, f.name)) in (int, float)]
    name = numeric[0] if numeric else fields[0].name
    return f"{name}={field_text(getattr(defaults, name))}"


def fields_help(config_cls: type, width: int = 76) -> str:
    """The algorithm's config fields and their defaults, from the dataclass, for the end of --help."""
    defaults = config_cls()
    items = [f"{f.name}={field_text(getattr(defaults, f.name))}" for f in dataclasses.fields(config_cls)]
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
            lines.append("")
        lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
    return (f"Config fields of {config_cls.__name__} and their defaults (set any with --set FIELD=VALUE; none: "
            "filled in by the algorithm when the run starts, from the dataset, the step budget, the action size or "
            "the behavior model):\n\n\b\n" + "\n".join(f"  {line}" for line in lines))


def default_out(algorithm: str, dataset: str, seed: int) -> str:
    return f"runs/{algorithm}-{re.sub(r'[^A-Za-z0-9._-]+', '_', dataset)}-seed{seed}"


def train_command(algorithm: str, help_text: str) -> click.Command:
    """The ``rl train <algorithm>`` command, with the options every algorithm shares."""
    from rl.algos import ALGORITHMS

    module = importlib.import_module(ALGORITHMS[algorithm].split(":")[0])
    presets: dict[str, dict[str, Any]] = getattr(module, "PRESETS", {})

    algo_cls = algorithm_class_of(algorithm)
    config_cls = algo_cls.config_class
    # Options that only some algorithms take are only on those algorithms' commands.
    options = [
        click.option("--dataset", required=True,
                     help="Dataset alias or Minari id (built-in recipes are built on first use)."),
    ]
    if algo_cls.behavior_kind != "none":
        options.append(click.option(
            "--behavior", type=click.Path(), default=None,
            help={"cache": "A sample cache (.npz from `bm sample-cache`) of a behavior model fitted on --dataset.",
                  "model": "A behavior-model directory (from `bm fit`) fitted on --dataset."}[algo_cls.behavior_kind]))
    else:
        options.append(refused_option("--behavior", f"{algorithm} trains without a behavior model; drop --behavior"))
    if algo_cls.behavior_kind == "cache":  # the cache-reading algorithms may also sample the model at act time
        options.append(click.option(
            "--behavior-model", type=click.Path(), default=None,
            help="Behavior-model directory, for configs that also sample the model at act time (default: the "
                 "one named in the cache's metadata)."))
    else:
        options.append(refused_option("--behavior-model", f"{algorithm} does not sample a behavior model at act "
                                      f"time; drop --behavior-model" + (" (its model is --behavior)"
                                                                        if algo_cls.behavior_kind == "model" else "")))
    if presets:
        options.append(click.option(
            "--variant", type=click.Choice(sorted(presets)), default=None,
            help="A named preset of config fields: " + ", ".join(f"{k} {v or '(defaults)'}" for k, v in presets.items())))
    options += [
        click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
                     help=f"Set any field of the algorithm's config (repeatable), e.g. --set {set_example(config_cls)}; "
                          "the fields and their defaults are listed above."),
        click.option("--steps", type=click.IntRange(min=1), default=None,
                     help=f"Gradient steps [default: {DEFAULT_STEPS}; with --resume, the run's recorded budget, "
                          "so an interrupted run continues to the end it was started for]"),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, cls=DefaultTextOption,
                     default_text=lambda: str(config_cls().batch_size), help="Minibatch size (the config's batch_size)."),
        click.option("--reward", type=click.Choice(REWARD_CHOICES), default=None, help=reward_help(algorithm)),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                     help="Seeds the network initialisation, the minibatches and the evaluation episodes."),
        device_option(),
        click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/ALGO-DATASET-seedN)."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its newest checkpoint."),
        click.option("--force", is_flag=True,
                     help="Delete the run in --out and start over (a directory holding anything else is refused)."),
        click.option("--eval-every", type=click.IntRange(min=0), default=5_000, show_default=True,
                     help="Evaluate every N steps (0: at the end only)."),
        click.option("--eval-episodes", type=click.IntRange(min=0), default=10, show_default=True,
                     help="Episodes per evaluation (0: none)."),
        click.option("--eval-sampled", is_flag=True, help="Evaluate sampled actions instead of the deterministic ones."),
        eval_maze_option("evaluation"),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=5_000, show_default=True,
                     help="Steps between checkpoints (the resume points); the last step is always saved."),
        click.option("--log-every", type=click.IntRange(min=1), default=250, show_default=True,
                     help="Steps between rows of metrics.csv (the only host reads of the training loop)."),
        threads_option(1),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    ]
    config_fields = {f.name for f in dataclasses.fields(config_cls)}
    for flag, (field, kind, text) in FIELD_OPTIONS.items():  # options for config fields, where the config has them
        if field in config_fields:
            default = getattr(config_cls(), field)
            shown = "set from the dataset id" if default is None else field_text(default)
            if kind is bool and default is not None:
                shown = flag.split("/")[0 if default else 1].lstrip("-")
            options.append(click.option(flag, field, type=None if kind is bool else kind, default=None,
                                        cls=DefaultTextOption, default_text=lambda shown=shown: shown, help=text))

    def command(dataset, overrides, steps, batch_size, reward, seed, device, out, resume, force, eval_every,
                eval_episodes, eval_sampled, eval_maze, checkpoint_every, log_every, threads, no_progress,
                behavior=None, behavior_model=None, variant=None, **option_fields):
        import torch

        from rl.core.trainer import RunConfig, checkpoint_paths, refuse_existing_run, train

        refuse_resume_with_force(resume, force, "run")
        torch.set_num_threads(threads)

        values: dict[str, Any] = dict(presets.get(variant, {})) if variant else {}
        # None = not given on the command line; 0.0 and --no-... are explicit values and must win over a preset.
        values.update({field: value for field, value in option_fields.items() if value is not None})
        values.update(parse_override(config_cls, item) for item in overrides)
        if batch_size is not None:
            values["batch_size"] = batch_size
        if reward is not None:
            values["reward_transform"] = reward
        algo_config = config_cls(**values)
        out_dir = out or default_out(algorithm, dataset, seed)
        if steps is None:
            recorded = recorded_steps(Path(out_dir)) if resume else None
            steps = DEFAULT_STEPS if recorded is None else recorded
        run_config = RunConfig(steps=steps, seed=seed, eval_every=eval_every, eval_episodes=eval_episodes,
                               eval_deterministic=not eval_sampled, eval_maze=eval_maze,
                               checkpoint_every=checkpoint_every, log_every=log_every)
        if resume and not checkpoint_paths(Path(out_dir)):
            refuse_existing_run(Path(out_dir), resume, force)  # a directory that is not a run is refused, not reused
            click.echo(f"nothing to resume in {out_dir}; starting a new run", err=True)
        require_writable_dir(out_dir)
        ensure_dataset(dataset)
        summary = train(algorithm, dataset, out_dir, algo_config, run_config, behavior=behavior,
                        behavior_model=behavior_model, device=device, resume=resume, force=force,
                        progress=not no_progress, echo=lambda line: click.echo(line, err=True))
        print_summary(summary, Path(out_dir))

    for option in reversed(options):
        command = option(command)
    return click.command(algorithm, help=f"{help_text}\n\n{fields_help(config_cls)}")(command)


def eval_maze_option(default: str | None):
    """--eval-maze: which maze evaluations run in, on maze datasets."""
    shown = "the run's own" if default is None else default
    return click.option(
        "--eval-maze", type=click.Choice(["evaluation", "data"]), default=default,
        help=f"Maze datasets: evaluate in the evaluation environment's maze (Minari's "
             f"recover_environment(eval_env=True)) or, the environment otherwise the same, in the maze the data "
             f"was collected in. They differ for Minari's AntMaze U-mazes, whose evaluation maze is the mirror "
             f"image of the data's (a note says so). [default: {shown}]")


def recorded_steps(run_dir: Path) -> int | None:
    """The step budget recorded in ``run_dir``'s config.json, if it holds an `rl train` run."""
    from rl.core.trainer import is_rl_run, read_run_record

    if not is_rl_run(run_dir):  # no config.json, or not a run's
        return None
    steps = read_run_record(run_dir).get("run", {}).get("steps")
    return steps if isinstance(steps, int) else None


def refused_option(flag: str, reason: str):
    """A hidden ``flag`` that fails with ``reason``: clearer than click's "No such option" for an option
    that other algorithms' commands take."""

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            raise click.UsageError(f"{flag}: {reason}.", ctx)

    return click.option(flag, "refused_" + flag.lstrip("-").replace("-", "_"), type=click.Path(), default=None,
                        hidden=True, expose_value=False, callback=refuse)


def reward_help(algorithm: str) -> str:
    """--reward's help, read from the algorithm's config default and its ``locomotion_reward``
    (see :func:`rl.core.rewards.resolve_reward_transform`), so it cannot drift from what runs."""
    from rl.algos import algorithm_class

    algo_cls = algorithm_class(algorithm)
    return (f"Reward convention (default: {algo_cls.config_class.reward_transform}). auto is resolved from the "
            f"dataset id: minus_one (r-1) on maze datasets, {algo_cls.locomotion_reward} on MuJoCo locomotion "
            "(mujoco/ ids), none otherwise.")


def algorithm_class_of(algorithm: str) -> type:
    from rl.algos import algorithm_class

    return algorithm_class(algorithm)


def print_summary(summary: dict[str, Any], where: Path) -> None:
    for key in ("steps", "steps_per_second", "episodes", "score_kind", "return_mean", "normalized_score_std"):
        if summary.get(key) is not None:
            value = summary[key]
            click.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    click.echo(f"run: {where}")
    score = summary.get("normalized_score_mean")
    click.echo(f"normalized_score: {score:.2f}" if score is not None else "normalized_score: nan")


@click.group("train")
def train_group() -> None:
    """Train an offline RL algorithm; writes DIR/config.json, metrics.csv, checkpoints/, summary.json.

    The last line printed is `normalized_score: X` (D4RL-normalised, from the dataset's
    reference scores; raw return when the dataset has none).
    """


train_group.add_command(train_command("bc", "Behavior cloning (deterministic actor, MSE): the floor to beat. "
                                            "Needs no --behavior."))
train_group.add_command(train_command(
    "arq", "ARQ (seed 002): Q-learning with a K-th-max target over in-support cached behaviour samples (Eq. 5), "
           "an explicit AWR policy or the implicit advantage-softmax policy (Eq. 6). "
           "--behavior must be a sample cache (.npz)."))
train_group.add_command(train_command(
    "spot", "SPOT (seed 004): TD3 + Q normalisation + lambda * (-log beta(pi(s)|s)) with a fitted density. "
            "--behavior must be a behavior-model directory (CVAE default; flow, Gaussian, score via its score)."))
train_group.add_command(train_command(
    "bear", "BEAR: a tanh-Gaussian policy kept within MMD eps of behaviour samples, learned Lagrange "
            "multiplier, MMD-only warm start (seed 001, Eq. 5). --behavior must be a behavior-model directory (any backend; CVAE "
            "is BEAR's). --gradient-penalty / --constraint-relaxation add seed 001's options."))
train_group.add_command(train_command(
    "bear++", "BEAR++: BEAR with the gradient penalty (seed 001, Eq. 8, lambda_GP 1) and constraint relaxation "
              "(Eq. 10-11) on. --behavior must be a behavior-model directory."))
train_group.add_command(train_command(
    "td3bc", "TD3+BC: TD3 with the actor loss -alpha Q/mean|Q| + (pi(s) - a)^2 (seed 001, Eq. 4). Needs no --behavior. "
             "--gradient-penalty / --constraint-relaxation add seed 001's options."))
train_group.add_command(train_command(
    "td3bc++", "TD3BC++: TD3+BC with the gradient penalty (seed 001, Eq. 8, lambda_GP 1) and constraint "
               "relaxation (Eq. 10, 12) on. Needs no --behavior."))
train_group.add_command(train_command(
    "dasco", "DASCO (seed 000), dual-generator support constraint: twin Q, a Gaussian policy that is also the primary generator, an auxiliary "
             "generator and an LSGAN discriminator; policy loss weighted by the detached ratio "
             "min(D(s,a), D(s,a_D))/D(s,a_D) (Eq. 11, 63). Needs no --behavior. Ablations: --set "
             "aux_generator=false, --set ratio_weight=false; --set eval_actor=aux_generator."))


@click.command("eval")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="A run directory.")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True, help="Evaluation episodes.")
@click.option("--sampled", is_flag=True, help="Sampled actions instead of deterministic ones.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Evaluation seed (episode i resets with seed+i).")
@click.option("--set", "acting", multiple=True, metavar="FIELD=VALUE",
              help="Act differently without retraining: a field that changes only how the trained run acts "
                   "(ARQ: policy=implicit|behavior|explicit, implicit_samples, implicit_sampler; DASCO: "
                   "eval_actor). Repeatable; the result goes to eval[FIELD=VALUE,...].json, beside eval.json.")
@eval_maze_option(None)
@device_option()
@threads_option(1)
def eval_command(run_dir: str, episodes: int, sampled: bool, seed: int, acting: tuple[str, ...], eval_maze: str | None,
                 device: str, threads: int) -> None:
    """Evaluate the newest checkpoint of a run; writes DIR/eval.json and prints `normalized_score: X` last.

    With --set, e.g. `rl eval --run DIR --set policy=implicit` for an ARQ run, the same critic is
    scored with Eq. 6's implicit policy instead of the AWR policy trained beside it; the result goes
    to DIR/eval[policy=implicit].json, so each way of acting keeps its own; evaluated in the data's
    maze (--eval-maze data, or a run trained so), to DIR/eval[eval_maze=data].json."""
    import torch

    torch.set_num_threads(threads)

    from behavior_models.io import write_json_atomic
    from rl.algos import algorithm_class
    from rl.core.trainer import acting_label, load_run, read_run_record

    values: dict[str, Any] = {}
    if acting:
        config_class = algorithm_class(read_run_record(run_dir)["algorithm"]).config_class
        values = dict(parse_override(config_class, item) for item in acting)
    run = load_run(run_dir, device=device, acting=values)
    if eval_maze is not None:
        run.run_config = dataclasses.replace(run.run_config, eval_maze=eval_maze)
    for note in run.evaluation_notes():
        click.echo(f"note: {note}", err=True)
    result = run.evaluate(episodes, deterministic=not sampled, seed=seed)
    summary = {**result.summary(), "eval_deterministic": not sampled, "eval_maze": run.run_config.eval_maze,
               "seed": seed, "checkpoint": run.checkpoint, "acting": values}
    label = {**values, **({"eval_maze": "data"} if run.run_config.eval_maze == "data" else {})}
    write_json_atomic(Path(run_dir) / (f"eval[{acting_label(label)}].json" if label else "eval.json"), summary)
    print_summary(summary, Path(run_dir))


@click.command("plot")
@click.option("--run", "run_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory (repeatable: one curve each).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--title", default="", help="Figure title.")
def plot_command(run_dirs: tuple[str, ...], out: str, title: str) -> None:
    """Draw the learning curves (evaluation score vs steps, from metrics.csv) of runs as a PNG.

    Curves are labelled by algorithm, and by algorithm and run directory name where an algorithm
    repeats, e.g. `bc (seed0)`. A run with no evaluation rows (trained with --eval-episodes 0, or
    not evaluated yet) is left out with a warning; with none to draw, nothing is written."""
    from rl.core.plotting import plot_learning_curves

    path = plot_learning_curves(list(run_dirs), out, title, warn=lambda message: click.echo(f"warning: {message}", err=True))
    record = write_figure_record(path, "rl plot", runs=[str(Path(run).resolve()) for run in run_dirs], title=title)
    click.echo(f"wrote {path} (and {record.name})")
