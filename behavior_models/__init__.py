"""A zoo of conditional behavior models beta(a|s) for offline reinforcement learning.

Every backend implements one contract (:class:`behavior_models.base.BehaviorModel`):
``log_prob``, ``grad_log_prob``, ``sample``, ``support_mask``, ``calibrate``, ``fit``,
``save`` and :func:`behavior_models.load`.
"""

__version__ = "0.1.0"

from behavior_models.registry import BACKENDS, backend_class, load  # noqa: E402

__all__ = ["BACKENDS", "SampleCache", "__version__", "backend_class", "build_sample_cache", "load"]


def __getattr__(name: str):
    # The sample cache pulls in torch.distributed and tqdm: import it only when asked for.
    if name in ("SampleCache", "build_sample_cache"):
        from behavior_models import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'behavior_models' has no attribute {name!r}")
