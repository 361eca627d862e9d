"""beta(.|s) at a batch of states, as a :class:`torch.distributions.Distribution`.

``model(obs)`` returns one (zuko's convention: a conditional model called on its context gives a
distribution), so code written against torch's distributions takes a behavior model as it
is::

    beta = model(obs)                 # batch_shape [B], event_shape [A]
    actions = beta.sample((30,))      # [30, B, A], torch's sample-shape-first layout
    log_p = beta.log_prob(actions)    # [30, B], nats
    kept = beta.support_mask(actions) # [30, B], bool

It is a view: every call goes through the model's own ``sample``, ``log_prob`` and
``support_mask`` (:mod:`behavior_models.base`), with their checks, options and clipping to the
action box. Only the layout differs: the model's ``sample(obs, n)`` is [B, n, A], this one's
``sample((n,))`` is [n, B, A]. The networks run when the view is sampled or scored, not when
it is made (a score model has nothing to compute before it knows the actions), so it reflects
the model's weights at that time, and ``torch.no_grad()`` applies where those calls are made.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from behavior_models.errors import BehaviorModelsError

if TYPE_CHECKING:
    from behavior_models.base import BehaviorModel


class ConditionalBehavior(Distribution):
    """beta(.|s) for each of the B states of ``obs`` (raw observations, [B, S])."""

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.independent(constraints.interval(-1.0, 1.0), 1)  # samples are clipped to the box

    def __init__(self, model: BehaviorModel, obs: Tensor) -> None:
        model._check(obs)
        self.model, self.obs = model, obs
        super().__init__(batch_shape=obs.shape[:1], event_shape=torch.Size([model.act_dim]), validate_args=False)

    @property
    def has_rsample(self) -> bool:  # a class attribute in torch; here it is the backend's
        return self.model.reparameterized_sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.model.name}, batch_shape={tuple(self.batch_shape)}, " \
               f"event_shape={tuple(self.event_shape)})"

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size(), **options: Any) -> Tensor:
        """Samples that carry gradients to the model's parameters (every backend but the score
        model); an entry clipped to the box edge carries none."""
        if not self.has_rsample:
            raise NotImplementedError(f"the {self.model.name} backend's samples are not reparameterised; use sample()")
        return self._draw(torch.Size(sample_shape), options)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size(), **options: Any) -> Tensor:
        """``sample_shape + [B, A]`` actions in the box [-1, 1]; ``options`` as the model's ``sample``
        takes them (the score model's ``sampler=``, ``steps=``, ``generator=``)."""
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape), options)

    def log_prob(self, value: Tensor, **options: Any) -> Tensor:
        """log beta(value|s) in nats, ``value`` [..., B, A] -> [..., B]; ``options`` as the
        model's ``log_prob`` takes them. Refused for a backend whose log_prob is not a
        log-density (the GAN's discriminator logit): use :meth:`support_mask`."""
        if self.model.log_prob_kind == "unnormalized":
            raise NotImplementedError(f"the {self.model.name} backend's log_prob is an unnormalised score, not a "
                                      "log-density; use support_mask(), or model.log_prob(obs, act) for the score")
        return self._per_state(self.model.log_prob, value, options, self.obs.dtype)

    def support_mask(self, value: Tensor, threshold: float | None = None, **options: Any) -> Tensor:
        """[..., B] bool: True where ``value`` [..., B, A] is in the support (the model's
        ``support_mask``: its calibrated threshold unless ``threshold`` is given)."""
        return self._per_state(lambda obs, act, **kw: self.model.support_mask(obs, act, threshold, **kw),
                               value, options, torch.bool)

    def _draw(self, sample_shape: torch.Size, options: dict[str, Any]) -> Tensor:
        n = math.prod(sample_shape)
        if n == 0 or len(self.obs) == 0:  # the model is not called: its option check is made here
            self.model.check_options("sample", options)
            return self.obs.new_empty(sample_shape + self.batch_shape + self.event_shape)
        actions = self.model.sample(self.obs, n, **options)  # [B, n, A]
        return actions.transpose(0, 1).reshape(sample_shape + self.batch_shape + self.event_shape)

    def _per_state(self, method: Callable[..., Tensor], value: Tensor, options: dict[str, Any],
                   dtype: torch.dtype) -> Tensor:
        """``method(obs, act)`` on every [B, A] slice of ``value`` [..., B, A], in one call."""
        shape = self.batch_shape + self.event_shape
        if not isinstance(value, Tensor) or value.shape[-2:] != shape:
            got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise BehaviorModelsError(f"actions for this distribution must have shape [..., {shape[0]}, {shape[1]}] "
                                      f"(one action per state, after any sample dims), got {got}")
        leading = value.shape[:-2]
        if value.numel() == 0:  # no action to score (the backends' reshapes need one): the options are checked here
            self.model.check_options("log_prob", options)  # support_mask passes them to log_prob too
            return torch.empty(leading + self.batch_shape, dtype=dtype, device=value.device)
        copies = math.prod(leading)
        obs = self.obs.repeat(copies, 1)  # state b of every copy sits at row copy * B + b, as in value
        return method(obs, value.reshape(-1, shape[1]), **options).reshape(leading + self.batch_shape)
