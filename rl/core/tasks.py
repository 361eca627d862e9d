"""Which family of tasks a dataset belongs to, read from its id: the one rule behind every
per-domain default (reward convention, ARQ's Table A.2/A.3 column, DASCO's w)."""

from __future__ import annotations

ADROIT_TASKS = ("adroit", "pen", "hammer", "door", "relocate")


def task_family(dataset_id: str) -> str:
    """The family of ``dataset_id``: ``antmaze`` for maze navigation (any id containing "maze",
    the "-1 except goal" reward of seed 002's AntMaze column), ``kitchen``, ``adroit``, else
    ``locomotion``."""
    name = dataset_id.lower()
    if "maze" in name:
        return "antmaze"
    if "kitchen" in name:
        return "kitchen"
    if any(task in name for task in ADROIT_TASKS):
        return "adroit"
    return "locomotion"
