"""A zoo of conditional behavior models beta(a|s) for offline reinforcement learning.

Every backend implements one contract (:class:`behavior_models.base.BehaviorModel`):
``log_prob``, ``grad_log_prob``, ``sample``, ``support_mask``, ``calibrate``, ``fit``,
``save`` and :func:`behavior_models.load`.
"""

__version__ = "0.1.0"

from behavior_models.registry import BACKENDS, backend_class, load  # noqa: E402

__all__ = ["BACKENDS", "__version__", "backend_class", "load"]
