"""Exceptions for the expected failures a user can fix.

The CLI turns every :class:`BehaviorModelsError` into a one-paragraph message and a
non-zero exit, without a traceback: these are the user's problem to fix, not bugs.
"""


class BehaviorModelsError(Exception):
    """Base class: an error whose message tells the user what is wrong and how to fix it."""


class DatasetNotFoundError(BehaviorModelsError, FileNotFoundError):
    """A dataset id that resolves to nothing on disk (and is not a built-in recipe)."""


class DatasetError(BehaviorModelsError, ValueError):
    """A dataset that exists but whose content is unusable (empty, NaN/inf, bad shapes)."""


class ArtefactMismatchError(BehaviorModelsError, ValueError):
    """An artefact (cache, checkpoint, model) built for other inputs than the ones given."""


class ConfigError(BehaviorModelsError, ValueError):
    """An invalid configuration value or combination of options."""


def first_lines(error: BaseException, count: int = 4) -> str:
    """The first ``count`` lines of ``error``'s message joined with "; ": enough of torch's
    state-dict errors (one line per mismatched tensor) to name the problem in one paragraph."""
    return "; ".join(line.strip() for line in str(error).strip().splitlines()[:count])
