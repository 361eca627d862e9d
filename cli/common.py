"""Pieces every command shares: error reporting, device and seed options, dataset resolution."""

from __future__ import annotations

import json
from typing import Any

import click

from behavior_models import __version__
from behavior_models.errors import BehaviorModelsError


class Group(click.Group):
    """A click group that reports the library's expected errors without a traceback.

    A :class:`BehaviorModelsError` is the user's to fix (a missing dataset, a mismatched
    cache), so it becomes ``Error: <message>`` and exit code 1, as click does for bad options.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BehaviorModelsError as error:
            raise click.ClickException(str(error)) from None


def root_group(name: str, help_text: str) -> Group:
    @click.group(name=name, cls=Group, help=help_text, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name=name)
    def group() -> None:
        pass

    return group


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
