"""Pieces every command shares: error reporting, device and seed options, dataset resolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from behavior_models import __version__
from behavior_models.errors import BehaviorModelsError


class Group(click.Group):
    """A click group that reports the library's expected errors without a traceback.

    A :class:`BehaviorModelsError` is the user's to fix (a missing dataset, a mismatched
    cache), so it becomes ``Error: <message>`` and exit code 1, as click does for bad options.
    So does an operating-system error on a named path (an --out inside a file, a read-only
    directory, a full disk); one without a path is not the user's and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BehaviorModelsError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            if error.filename is None:
                raise
            raise click.ClickException(f"cannot use {error.filename}: {error.strerror or error}. Check the path "
                                       "(is a parent a file? is it writable? is the disk full?)") from None


def root_group(name: str, help_text: str) -> Group:
    @click.group(name=name, cls=Group, help=help_text, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name=name)
    def group() -> None:
        pass

    return group


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse a device this torch cannot use here, before any work starts; pass the text on
    unchanged, but for ``auto``: the GPU when torch sees one, else the CPU (never MPS, whose lack
    of float64 the likelihood's ODE needs)."""
    import torch

    hint = "use auto, cpu, cuda or cuda:N"
    if value == "auto":
        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu"
    try:
        device = torch.device(value)
    except RuntimeError:
        raise click.BadParameter(f"{value!r} is not a torch device; {hint}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{value!r}: this torch ({torch.__version__}) sees no CUDA device; use cpu")
        if device.index is not None and device.index >= count:
            raise click.BadParameter(f"{value!r}: there are {count} CUDA device(s), cuda:0 to cuda:{count - 1}; {hint}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise click.BadParameter(f"{value!r}: MPS is not available on this machine; use cpu")
    elif device.type != "cpu":
        raise click.BadParameter(f"{value!r}: only CPU, CUDA and MPS devices are supported; {hint}")
    return value


def threads_option(default: int | None) -> Callable[[Any], Any]:
    """The ``--threads`` option: torch's CPU threads (None: torch's own default, every core)."""
    return click.option("--threads", type=click.IntRange(min=1), default=default, show_default=default is not None,
                        help="torch CPU threads" + (" (default: torch's own, every core)" if default is None else "")
                             + ". Updates of small MLPs are fastest on one thread, and extra threads spin-wait badly "
                               "on a shared machine; raise it for large batches on an idle machine.")


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


DEVICE_HELP = "Torch device: auto (the GPU when torch sees one, else the CPU), cpu, cuda or cuda:N."


def device_option(help_text: str = DEVICE_HELP) -> Callable[[Any], Any]:
    """The ``--device`` option of every command, checked against the devices torch sees; the run
    records the device ``auto`` resolved to."""
    return click.option("--device", default="auto", show_default=True, callback=_check_device, help=help_text)


class DefaultTextOption(click.Option):
    """An option whose ``[default: ...]`` in --help is text computed when the help is shown.

    For options whose value defaults to None ("not given": a config file, a preset or the
    config class decides) but whose effective default the user should still see. The text comes
    from ``default_text()``, called only while formatting --help, so reading it from config
    classes costs the commands nothing at import.
    """

    def __init__(self, *args: Any, default_text: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_text = default_text

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        extra["default"] = self.default_text()
        return extra


def refuse_resume_with_force(resume: bool, force: bool, what: str) -> None:
    """``--resume`` and ``--force`` contradict each other; refuse the pair before any work starts."""
    if resume and force:
        raise click.UsageError(f"--resume continues the {what} in --out and --force deletes it; pass one of them, not both.")


def require_writable_dir(path: str | Path, option: str = "--out") -> None:
    """Refuse a directory that cannot be created or written, before a dataset is built or loaded:
    the nearest existing ancestor must be a writable directory."""
    import os

    target = Path(path).absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise click.UsageError(f"{option} {path}: {existing} is a file, not a directory; choose another {option}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.UsageError(f"{option} {path}: {existing} is not writable; choose another {option}.")


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def ensure_dataset(name: str) -> None:
    """Make sure the dataset behind ``name`` is on disk before a command reads it.

    A built-in recipe that is not built yet is generated first, so that a first run on a
    fresh machine just works. Anything else that is missing fails fast in the loader.
    """
    from behavior_models.data import is_local, recipe_for

    if is_local(name) or recipe_for(name) is None:
        return
    from rl.datasets import make_dataset  # the recipes need environments, so they live in rl

    click.echo(f"{name} is a built-in recipe that is not on disk yet: building it now.", err=True)
    make_dataset(recipe_for(name).name)


# --goal-switch's choices (`bm sample-cache`, `rl train`): "auto" and behavior_models.data.goals'
# GOAL_SWITCH_VIEWS, written out so that the commands' --help imports no dataset code.
GOAL_SWITCH_CHOICES = ("auto", "keep", "relabel")


def write_figure_record(figure: Path, command: str, **inputs: Any) -> Path:
    """``<figure>.json`` beside a figure a command drew: the command, what it was drawn from and with
    which options, and the library version, so that a PNG found later says what it shows."""
    from datetime import datetime, timezone

    from behavior_models.io import write_json_atomic

    record = Path(f"{figure}.json")
    write_json_atomic(record, {"command": command, "figure": str(Path(figure).resolve()), **inputs,
                               "library_version": __version__,
                               "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return record
