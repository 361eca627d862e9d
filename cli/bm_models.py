"""``bm fit``, ``bm eval`` and ``bm plot``: thin wrappers over behavior_models.zoo and .plotting."""

from __future__ import annotations

from pathlib import Path

import click

from behavior_models.registry import BACKENDS
from cli.common import (DefaultTextOption, device_option, echo_json, ensure_dataset, refuse_resume_with_force,
                        require_writable_dir, set_threads, threads_option, write_figure_record)


def backend_defaults(field: str) -> str:
    """The default of config ``field`` in every backend's config class, for --help: one value when
    they agree, else ``name value`` per backend. Read from the classes, so it cannot go stale."""
    from behavior_models.registry import backend_class

    values = {name: getattr(backend_class(name).config_class(), field) for name in sorted(BACKENDS)}

    def text(value) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    if len(set(values.values())) == 1:
        return text(next(iter(values.values())))
    return "per backend: " + ", ".join(f"{name} {text(value)}" for name, value in values.items())


def config_option(flag: str, field: str, kind, help_text: str):
    """An option for a config field that stays None unless given (so --config FILE's value is kept),
    with each backend's default shown in --help."""
    return click.option(flag, field, cls=DefaultTextOption, type=kind, default=None, help=help_text,
                        default_text=lambda: backend_defaults(field))


@click.command("fit")
@click.option("--model", "backend", type=click.Choice(sorted(BACKENDS)), required=True,
              help="Which backend to fit.")
@click.option("--dataset", required=True, help="Dataset alias or Minari id (recipes are built on first use).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory: weights.pt, config.json, model.json, curve.csv, tb/ (TensorBoard), "
                   "checkpoint.pt.")
@config_option("--steps", "steps", click.IntRange(min=1),
               "Gradient steps (overrides --config; with --resume and neither, the fit's recorded budget).")
@config_option("--batch-size", "batch_size", click.IntRange(min=1), "Minibatch size (overrides --config).")
@config_option("--lr", "lr", float, "Adam learning rate (overrides --config).")
@config_option("--seed", "seed", int, "Seed of the fit and of the held-out split (overrides --config).")
@device_option()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON object of config fields of this backend; the options above override it.")
@click.option("--force", is_flag=True, help="Replace the behavior-model run in --out (a directory holding anything else is refused).")
@click.option("--resume", is_flag=True, help="Continue the interrupted (or shorter) fit in --out.")
@threads_option(None)
def fit_command(backend, dataset, out_dir, steps, batch_size, lr, seed, device, config_file, force, resume, threads):
    """Fit a behavior model beta(a|s) on DATASET and write it to --out.

    \b
    The config is the backend's defaults, then --config FILE.json, then the options given.
    The held-out episodes (config holdout_fraction, split by --seed) calibrate the support
    threshold and are what `bm eval` reports on. An existing --out is never overwritten
    silently: --force replaces it, --resume continues an interrupted fit.

    \b
    Example:
      bm fit --model flow --dataset pointmaze-umaze-expert --out runs/flow --steps 20000
    """
    from behavior_models.data import load_transitions
    from behavior_models.training import recorded_steps, refuse_unusable_out_dir
    from behavior_models.zoo import build_config, fit_backend

    refuse_resume_with_force(resume, force, "fit")
    set_threads(threads)
    # A resumed fit continues to the budget it was started with, unless --config or --steps gives one.
    recorded = recorded_steps(out_dir) if resume and steps is None else None
    config = build_config(backend, config_file, base={"steps": recorded} if recorded is not None else None,
                          steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    click.echo(f"bm fit {backend}: {config.steps:,} steps, batch size {config.batch_size}, lr {config.lr:g}, "
               f"seed {config.seed} -> {out_dir}", err=True)
    require_writable_dir(out_dir)
    refuse_unusable_out_dir(Path(out_dir), resume, force)  # before a dataset is built or loaded
    ensure_dataset(dataset)
    transitions = load_transitions(dataset)
    model = fit_backend(backend, transitions, config, out_dir, device=device, resume=resume, force=force)
    click.echo(f"{backend} fitted on {transitions.dataset_id} ({len(transitions)} transitions) -> {out_dir}; "
               f"support threshold {float(model.support_threshold):.4g} ({model.threshold_source})")


@click.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory written by `bm fit`.")
@click.option("--dataset", required=True, help="Dataset alias or Minari id.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--max-points", type=click.IntRange(min=1), default=2000, show_default=True, help="Held-out points to use.")
@click.option("--samples", "num_samples", type=click.IntRange(min=1), default=10, show_default=True, help="Samples per state.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the subsample and the draws.")
@device_option()
def eval_command(model_dir, dataset, as_json, max_points, num_samples, seed, device):
    """Evaluate a fitted model on DATASET's held-out episodes.

    \b
    Reports the held-out NLL (or the estimate/score the backend has; see log_prob_kind),
    the support-mask rate on held-out dataset actions and on uniform random actions at the
    same states, and sample statistics. On the dataset the model was fitted on, the held-out
    episodes are exactly those of the fit (a fit with holdout_fraction=0 has none: then the
    training data, which the report's "split" says); on another dataset, the whole dataset.
    """
    import behavior_models
    from behavior_models.data import load_transitions
    from behavior_models.zoo import evaluate

    ensure_dataset(dataset)
    model = behavior_models.load(model_dir, device=device)
    report = evaluate(model, load_transitions(dataset), max_points=max_points, num_samples=num_samples, seed=seed)
    if as_json:
        echo_json(report)
        return
    for key, value in report.items():
        if key == "samples":
            for sub_key, sub_value in value.items():
                click.echo(f"samples.{sub_key:34s} {_fmt(sub_value)}")
        else:
            click.echo(f"{key:42s} {_fmt(value)}")


@click.command("plot")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory written by `bm fit`.")
@click.option("--dataset", required=True, help="Dataset alias or Minari id.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--state-dim", type=click.IntRange(min=0), default=0, show_default=True,
              help="1-D actions: the state coordinate on the x axis.")
@click.option("--states", "num_states", type=click.IntRange(min=1), default=4, show_default=True,
              help="More dims: how many held-out states to show.")
@click.option("--dims", default=None, help="More dims: action dimensions to pair, e.g. 0,1,2 (default: first 4).")
@click.option("--resolution", type=click.IntRange(min=2), default=120, show_default=True, help="1-D actions: grid size per axis.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the state choice and samples.")
@device_option()
def plot_command(model_dir, dataset, out, state_dim, num_states, dims, resolution, seed, device):
    """Draw a fitted model against DATASET into a PNG.

    \b
    1-D actions: heat map of beta(a|s) over (state[--state-dim], action) with the data on
    top (seed 002, Fig. A.1). More dims: 2-D marginals of model samples against the dataset
    actions of the nearest states, for --states held-out states.
    """
    import behavior_models
    from behavior_models.data import load_transitions
    from behavior_models.io import fingerprint_directory
    from behavior_models.plotting import plot_model

    try:
        dim_list = [int(x) for x in dims.split(",")] if dims else None
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {dims!r}",
                                 param_hint="--dims") from None
    if dim_list is not None and len(dim_list) < 2:
        raise click.BadParameter(f"the panels pair consecutive dimensions: give at least two, got {dims!r}",
                                 param_hint="--dims")
    ensure_dataset(dataset)
    model = behavior_models.load(model_dir, device=device)
    if dim_list and not all(0 <= d < model.act_dim for d in dim_list):
        raise click.BadParameter(f"action dimensions must be in [0, {model.act_dim}), got {dim_list}",
                                 param_hint="--dims")
    transitions = load_transitions(dataset)
    path = plot_model(model, transitions, out, state_dim=state_dim, num_states=num_states,
                      dims=dim_list, resolution=resolution, seed=seed)
    record = write_figure_record(
        path, "bm plot", model_dir=str(Path(model_dir).resolve()), model_fingerprint=fingerprint_directory(model_dir),
        dataset_id=transitions.dataset_id, dataset_fingerprint=transitions.fingerprint, state_dim=state_dim,
        states=num_states, dims=dim_list, resolution=resolution, seed=seed)
    click.echo(f"wrote {path} (and {record.name})")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)
