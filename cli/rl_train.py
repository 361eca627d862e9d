"""``rl train ALGO`` and ``rl eval``: thin wrappers over :mod:`rl.core.trainer`.

Every algorithm gets the same options (dataset, behaviour artefacts, steps, seed, device,
output, resume, evaluation) from :func:`train_command`; its own config fields are set with
``--set FIELD=VALUE`` (any field of its config dataclass) and, where the algorithm module
defines ``PRESETS``, named variants with ``--variant``.
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
from cli.common import device_option, ensure_dataset

REWARD_CHOICES = ("auto", "none", "minus_one", "return_range")
# Command-line options that set a config field, on every algorithm whose config has that field:
# seed 001's two options for BEAR and TD3+BC (``--set FIELD=VALUE`` reaches any field too).
FIELD_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--gradient-penalty": ("gradient_penalty", float, "lambda_GP of seed 001's Eq. 8: one-sided penalty on "
                                                        "||dQ/da|| at random actions, every 5th step (0: off)."),
    "--constraint-relaxation/--no-constraint-relaxation": (
        "constraint_relaxation", bool, "Weight the constraint by seed 001's Eq. 10 (min-max normalised Q, no "
                                       "gradient); --no-constraint-relaxation turns it off in the ++ presets."),
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


def default_out(algorithm: str, dataset: str, seed: int) -> str:
    return f"runs/{algorithm}-{re.sub(r'[^A-Za-z0-9._-]+', '_', dataset)}-seed{seed}"


def train_command(algorithm: str, help_text: str) -> click.Command:
    """The ``rl train <algorithm>`` command, with the options every algorithm shares."""
    from rl.algos import ALGORITHMS

    module = importlib.import_module(ALGORITHMS[algorithm].split(":")[0])
    presets: dict[str, dict[str, Any]] = getattr(module, "PRESETS", {})

    @click.command(algorithm, help=help_text)
    @click.option("--dataset", required=True, help="Dataset alias or Minari id (built-in recipes are built on first use).")
    @click.option("--behavior", type=click.Path(), default=None,
                  help="A sample cache (.npz, `bm sample-cache`) or a behavior-model directory (`bm fit`), "
                       "as the algorithm needs.")
    @click.option("--behavior-model", type=click.Path(), default=None,
                  help="Behavior-model directory for algorithms that also sample the model at act time "
                       "(default: the one named in the cache's metadata).")
    @click.option("--variant", type=click.Choice(sorted(presets)) if presets else click.STRING, default=None,
                  help="A named preset of config fields: " + (", ".join(f"{k} {v or '(defaults)'}" for k, v in presets.items())
                                                              if presets else "none for this algorithm."))
    @click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
                  help="Set any field of the algorithm's config (repeatable), e.g. --set k=3.")
    @click.option("--steps", type=click.IntRange(min=1), default=20_000, show_default=True, help="Gradient steps.")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="Minibatch size (default: the algorithm's).")
    @click.option("--reward", type=click.Choice(REWARD_CHOICES), default=None, help=reward_help(algorithm))
    @click.option("--seed", type=int, default=0, show_default=True,
                  help="Seeds the network initialisation, the minibatches and the evaluation episodes.")
    @device_option()
    @click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/ALGO-DATASET-seedN).")
    @click.option("--resume", is_flag=True, help="Continue the run in --out from its newest checkpoint.")
    @click.option("--force", is_flag=True, help="Delete the run in --out and start over (a directory holding anything else is refused).")
    @click.option("--eval-every", type=click.IntRange(min=0), default=5_000, show_default=True, help="Evaluate every N steps (0: at the end only).")
    @click.option("--eval-episodes", type=click.IntRange(min=0), default=10, show_default=True, help="Episodes per evaluation (0: none).")
    @click.option("--eval-sampled", is_flag=True, help="Evaluate sampled actions instead of the deterministic ones.")
    @click.option("--checkpoint-every", type=click.IntRange(min=1), default=5_000, show_default=True,
                  help="Steps between checkpoints (the resume points); the last step is always saved.")
    @click.option("--log-every", type=click.IntRange(min=1), default=250, show_default=True,
                  help="Steps between rows of metrics.csv (the only host reads of the training loop).")
    @click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                  help="torch CPU threads. Updates of small MLPs are fastest on one thread, and extra threads "
                       "spin-wait badly on a shared machine; raise it for large batches on an idle machine.")
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
    def command(dataset, behavior, behavior_model, variant, overrides, steps, batch_size, reward, seed, device, out,
                resume, force, eval_every, eval_episodes, eval_sampled, checkpoint_every, log_every, threads,
                no_progress, **option_fields):
        import torch

        from rl.algos import algorithm_class
        from rl.core.trainer import RunConfig, train

        torch.set_num_threads(threads)

        config_cls = algorithm_class(algorithm).config_class
        values: dict[str, Any] = dict(presets.get(variant, {})) if variant else {}
        if variant and not presets:
            raise ConfigError(f"{algorithm} has no --variant presets")
        # None = not given on the command line; 0.0 and --no-... are explicit values and must win over a preset.
        values.update({field: value for field, value in option_fields.items() if value is not None})
        values.update(parse_override(config_cls, item) for item in overrides)
        if batch_size is not None:
            values["batch_size"] = batch_size
        if reward is not None:
            values["reward_transform"] = reward
        algo_config = config_cls(**values)
        run_config = RunConfig(steps=steps, seed=seed, eval_every=eval_every, eval_episodes=eval_episodes,
                               eval_deterministic=not eval_sampled, checkpoint_every=checkpoint_every,
                               log_every=log_every)
        ensure_dataset(dataset)
        out_dir = out or default_out(algorithm, dataset, seed)
        summary = train(algorithm, dataset, out_dir, algo_config, run_config, behavior=behavior,
                        behavior_model=behavior_model, device=device, resume=resume, force=force,
                        progress=not no_progress, echo=lambda line: click.echo(line, err=True))
        print_summary(summary, Path(out_dir))

    for flag, (field, kind, text) in FIELD_OPTIONS.items():  # options for config fields, where the config has them
        if field in {f.name for f in dataclasses.fields(algorithm_class_config(algorithm))}:
            command = click.option(flag, field, type=None if kind is bool else kind, default=None, help=text)(command)
    return command


def reward_help(algorithm: str) -> str:
    """--reward's help, read from the algorithm's config default and its ``locomotion_reward``
    (see :func:`rl.core.rewards.resolve_reward_transform`), so it cannot drift from what runs."""
    from rl.algos import algorithm_class

    algo_cls = algorithm_class(algorithm)
    return (f"Reward convention (default: {algo_cls.config_class.reward_transform}). auto is resolved from the "
            f"dataset id: minus_one (r-1) on maze datasets, {algo_cls.locomotion_reward} on MuJoCo locomotion "
            "(mujoco/ ids), none otherwise.")


def algorithm_class_config(algorithm: str) -> type:
    from rl.algos import algorithm_class

    return algorithm_class(algorithm).config_class


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
@click.option("--seed", type=int, default=0, show_default=True, help="Evaluation seed (episode i resets with seed+i).")
@click.option("--set", "acting", multiple=True, metavar="FIELD=VALUE",
              help="Act differently without retraining: a field that changes only how the trained run acts "
                   "(ARQ: policy=implicit|behavior|explicit, implicit_samples, implicit_sampler; DASCO: "
                   "eval_actor). Repeatable; recorded in eval.json.")
@device_option()
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
def eval_command(run_dir: str, episodes: int, sampled: bool, seed: int, acting: tuple[str, ...], device: str,
                 threads: int) -> None:
    """Evaluate the newest checkpoint of a run; writes DIR/eval.json and prints `normalized_score: X` last.

    With --set, e.g. `rl eval --run DIR --set policy=implicit` for an ARQ run, the same critic is
    scored with Eq. 6's implicit policy instead of the AWR policy trained beside it."""
    import torch

    torch.set_num_threads(threads)

    from behavior_models.io import write_json_atomic
    from rl.algos import algorithm_class
    from rl.core.trainer import checkpoint_paths, load_run, read_run_record

    values: dict[str, Any] = {}
    if acting:
        config_class = algorithm_class(read_run_record(run_dir)["algorithm"]).config_class
        values = dict(parse_override(config_class, item) for item in acting)
    run = load_run(run_dir, device=device, acting=values)
    result = run.evaluate(episodes, deterministic=not sampled, seed=seed)
    summary = {**result.summary(), "eval_deterministic": not sampled, "seed": seed,
               "checkpoint": checkpoint_paths(Path(run_dir))[-1].name, "acting": values}
    write_json_atomic(Path(run_dir) / "eval.json", summary)
    print_summary(summary, Path(run_dir))


@click.command("plot")
@click.option("--run", "run_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory (repeatable: one curve each).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--title", default="", help="Figure title.")
def plot_command(run_dirs: tuple[str, ...], out: str, title: str) -> None:
    """Draw the learning curves (evaluation score vs steps, from metrics.csv) of runs as a PNG."""
    from rl.core.plotting import plot_learning_curves

    click.echo(f"wrote {plot_learning_curves(list(run_dirs), out, title)}")
