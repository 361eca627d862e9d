"""Which family of tasks a dataset belongs to, read from its id: the one rule behind every
per-domain default (reward convention, ARQ's Table A.2/A.3 column, DASCO's w)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

Config = TypeVar("Config")

ADROIT_TASKS = frozenset({"adroit", "pen", "hammer", "door", "relocate"})


def task_family(dataset_id: str) -> str:
    """The family of ``dataset_id``: ``antmaze`` for maze navigation (any id with a word containing
    "maze": the "-1 except goal" reward of seed 002's AntMaze column), ``kitchen``, ``adroit``,
    else ``locomotion``.

    The id is split into words at ``/``, ``-``, ``_`` and ``.``, and kitchen and Adroit are matched
    as whole words: a substring test would put ``mujoco/invertedpendulum/...`` among the Adroit
    ``pen`` tasks."""
    words = _words(dataset_id)
    if any("maze" in word for word in words):
        return "antmaze"
    if "kitchen" in words:
        return "kitchen"
    if ADROIT_TASKS.intersection(words):
        return "adroit"
    return "locomotion"


def adroit_task(dataset_id: str) -> str | None:
    """``door``, ``hammer``, ``pen`` or ``relocate`` for an Adroit dataset id (whole words, as in
    :func:`task_family`), else None: the per-task columns of seed 001's Table 7."""
    return next((task for task in ADROIT_TASKS - {"adroit"} if task in _words(dataset_id)), None)


def _words(dataset_id: str) -> list[str]:
    return re.split(r"[/\-_.\s]+", dataset_id.lower())


def fill_unset_fields(config: Config, defaults: dict[str, Any]) -> Config:
    """``config`` (a frozen dataclass) with each field named in ``defaults`` that is None set to
    its default there; fields the user set are kept. How per-domain defaults are resolved."""
    changes = {name: value for name, value in defaults.items() if getattr(config, name) is None}
    return dataclasses.replace(config, **changes) if changes else config
