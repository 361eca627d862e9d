"""Which family of tasks a dataset belongs to, read from its id: the one rule behind every
per-domain default (reward convention, ARQ's Table A.2/A.3 column, DASCO's w)."""

from __future__ import annotations

import re

ADROIT_TASKS = frozenset({"adroit", "pen", "hammer", "door", "relocate"})


def task_family(dataset_id: str) -> str:
    """The family of ``dataset_id``: ``antmaze`` for maze navigation (any id with a word containing
    "maze": the "-1 except goal" reward of seed 002's AntMaze column), ``kitchen``, ``adroit``,
    else ``locomotion``.

    The id is split into words at ``/``, ``-``, ``_`` and ``.``, and kitchen and Adroit are matched
    as whole words: a substring test would put ``mujoco/invertedpendulum/...`` among the Adroit
    ``pen`` tasks."""
    words = re.split(r"[/\-_.\s]+", dataset_id.lower())
    if any("maze" in word for word in words):
        return "antmaze"
    if "kitchen" in words:
        return "kitchen"
    if ADROIT_TASKS.intersection(words):
        return "adroit"
    return "locomotion"
