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


class TrainingDivergedError(BehaviorModelsError, ArithmeticError):
    """A training loop whose logged losses or metrics stopped being finite."""


def first_lines(error: BaseException, count: int = 4) -> str:
    """The first ``count`` lines of ``error``'s message joined with "; ": enough of torch's
    state-dict errors (one line per mismatched tensor) to name the problem in one paragraph."""
    return "; ".join(line.strip() for line in str(error).strip().splitlines()[:count])


def require_at_least(config: object, bounds: dict[str, int]) -> None:
    """Refuse ``config`` if any of its counts named in ``bounds`` is below its bound (None, for an
    optional count, passes), naming every such field. Below its bound a count means nothing, and
    the job would not say so: a batch of 0 trains on nan losses, an interval of 0 divides by zero
    mid-run."""
    low = [f"{type(config).__name__}.{name} must be at least {bound}, got {getattr(config, name)}"
           for name, bound in bounds.items() if getattr(config, name) is not None and getattr(config, name) < bound]
    if low:
        raise ConfigError("; ".join(low))


def require_ordered(config: object, lower: str, upper: str) -> None:
    """Refuse ``config`` if its field ``lower`` exceeds its field ``upper``: torch.clamp(x, lo, hi)
    with lo > hi returns hi everywhere, so a swapped pair of clamp bounds would act silently as a
    constant."""
    low, high = getattr(config, lower), getattr(config, upper)
    if not low <= high:
        raise ConfigError(f"{type(config).__name__}.{lower} ({low}) must be <= {upper} ({high})")
