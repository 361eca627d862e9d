"""The behavior-model contract (ALGORITHMS.md, "Behavior-model contract").

Every backend is a :class:`torch.nn.Module` subclass of :class:`BehaviorModel` and offers, on
any device and batched (no Python loop over samples):

* ``log_prob(obs [B,S], act [B,A]) -> [B]`` in nats per sample; :attr:`log_prob_kind` says
  whether it is exact, a bound/estimate, or an unnormalised score;
* ``grad_log_prob(obs, act, **log_prob_options) -> [B,A]`` = d/da log beta(a|s), by autograd or natively;
* ``sample(obs [B,S], n) -> [B,n,A]``, clipped to the action box [-1, 1];
* ``support_mask(obs, act, threshold=None) -> bool [B]``: log_prob >= threshold;
* ``calibrate(transitions, quantile=..., absolute=...)`` stores the support threshold;
* ``fit(transitions, config, out_dir=...)``, ``save(dir)`` and :func:`behavior_models.load`;
* ``model(obs)``: the same, as a :class:`torch.distributions.Distribution` over actions at each
  state (:mod:`behavior_models.conditional`).

Observations are given raw; the model normalises them with the statistics it was fitted
with (stored as buffers, so they move with ``.to(device)`` and are saved with the weights).

A backend implements four hooks on *normalised* observations: ``_log_prob``, ``_sample``,
``make_optimizers`` and ``training_step``; optionally ``_grad_log_prob`` when it has a
native gradient (the score model's score).
"""

from __future__ import annotations

import abc
import functools
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from behavior_models import __version__
from behavior_models.conditional import ConditionalBehavior
from behavior_models.data.transitions import NormalizationStats, Transitions
from behavior_models.errors import (ArtefactMismatchError, BehaviorModelsError, ConfigError, first_lines,
                                    require_at_least)
from behavior_models.io import config_from_dict, config_to_dict, save_config, write_json_atomic

LogProbKind = Literal["exact", "bound", "estimate", "unnormalized"]
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
CURVE_FILE = "curve.csv"
CHECKPOINT_FILE = "checkpoint.pt"

# Log-density threshold of the ARQ paper (seed 002, App. A.2): beta(a|s) >= e^-5.
ARQ_LOG_THRESHOLD = -5.0


class InputError(BehaviorModelsError, ValueError):
    """Inputs of the wrong shape, dtype or device for a model."""


@dataclass(frozen=True)
class BehaviorModelConfig:
    """Fields every backend's config shares. Backends subclass it and add their own."""

    steps: int = 20_000  # gradient steps of the fit
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    # Fit on actions clipped to [-1 + delta, 1 - delta]: planners and clipping put mass exactly
    # on +-1, where a density model's log-density is unbounded (ALGORITHMS.md, "Conventions").
    boundary_delta: float = 1e-3
    normalize_states: bool = True
    state_eps: float = 1e-3  # added to the state std
    holdout_fraction: float = 0.1  # episodes held out for calibration and `bm eval`
    support_quantile: float = 0.01  # calibrated threshold: this quantile of held-out log-probs
    calibration_points: int = 4096  # held-out points used by calibrate()
    ema_decay: float = 0.0  # 0 disables the weight EMA; the score model uses 0.999
    # Cosine decay of every optimiser's learning rate from lr to lr * lr_final_fraction over
    # the fit; 1.0 keeps it constant. Decay removes most of the final-iterate noise of Adam.
    lr_final_fraction: float = 0.1
    log_every: int = 100
    checkpoint_every: int = 2_000

    def __post_init__(self) -> None:
        # 0 calibration points would leave the support threshold an empty quantile.
        require_at_least(self, dict.fromkeys(("steps", "batch_size", "log_every", "checkpoint_every",
                                              "calibration_points"), 1))
        if not self.lr > 0:
            raise ConfigError(f"{type(self).__name__}.lr must be > 0, got {self.lr}")
        # Below ~6e-8, 1 - delta rounds to 1 in float32 and the density backends take atanh(1).
        if not 1e-6 <= self.boundary_delta < 0.5:
            raise ConfigError(f"boundary_delta must be in [1e-6, 0.5), got {self.boundary_delta}")
        # Refused here rather than mid-fit or after it: numpy takes seeds in [0, 2^32) (a traceback
        # at the first line of the fit otherwise); calibrate() refuses a quantile outside (0, 1)
        # only after the last step; ema_decay = 1 never moves the average off the first step's
        # weights and a negative lr_final_fraction turns the end of the fit into gradient ascent,
        # both silently; a holdout_fraction outside [0, 1) is silently clipped by the split.
        for field, inside, interval in (("seed", 0 <= self.seed <= 2**32 - 1, "[0, 2^32 - 1]"),
                                        ("support_quantile", 0.0 < self.support_quantile < 1.0, "(0, 1)"),
                                        ("holdout_fraction", 0.0 <= self.holdout_fraction < 1.0, "[0, 1)"),
                                        ("ema_decay", 0.0 <= self.ema_decay < 1.0, "[0, 1)"),
                                        ("lr_final_fraction", 0.0 <= self.lr_final_fraction < math.inf, "[0, inf)")):
            if not inside:
                raise ConfigError(f"{type(self).__name__}.{field} must be in {interval}, got {getattr(self, field)}")


@functools.cache
def _hook_options(hook: Any) -> tuple[str, ...] | None:
    """The optional keyword parameters of a backend hook (``_sample(self, obs, n, sampler=None)``
    gives ``("sampler",)``); None if it takes ``**options``. Cached: SPOT calls log_prob every update."""
    parameters = list(inspect.signature(hook).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.default is not inspect.Parameter.empty)


class BehaviorModel(nn.Module, abc.ABC):
    """Base class of every backend; see the module docstring for the contract."""

    name: ClassVar[str]
    config_class: ClassVar[type[BehaviorModelConfig]] = BehaviorModelConfig
    log_prob_kind: ClassVar[LogProbKind]
    differentiable_log_prob: ClassVar[bool]
    native_grad_log_prob: ClassVar[bool] = False
    reparameterized_sample: ClassVar[bool]

    def __init__(self, obs_dim: int, act_dim: int, config: BehaviorModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.config = config
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("support_threshold", torch.tensor(math.nan))
        self.threshold_source = "none"  # "quantile=<q>" or "absolute"
        self.dataset_id = ""
        self.dataset_fingerprint = ""

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _log_prob(self, obs: Tensor, act: Tensor, **options: Any) -> Tensor:
        """log beta(act | obs) in nats, [B]; ``obs`` already normalised."""

    @abc.abstractmethod
    def _sample(self, obs: Tensor, n: int, **options: Any) -> Tensor:
        """[B, n, A] samples (not yet clipped); ``obs`` already normalised."""

    def _grad_log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        raise NotImplementedError

    @abc.abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers ``training_step`` uses, by name (saved in checkpoints)."""

    @abc.abstractmethod
    def training_step(self, obs: Tensor, act: Tensor, step: int,
                      optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Tensor]:
        """One update on a minibatch (normalised obs, boundary-clipped actions).

        Returns detached scalar tensors; the loop reads them only when it logs, so that a
        step never waits on the device.
        """

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {
            "log_prob_kind": cls.log_prob_kind,
            "differentiable_log_prob": cls.differentiable_log_prob,
            "native_grad_log_prob": cls.native_grad_log_prob,
            "grad_log_prob": cls.native_grad_log_prob or cls.differentiable_log_prob,
            "reparameterized_sample": cls.reparameterized_sample,
        }

    def set_normalization(self, stats: NormalizationStats) -> None:
        self.obs_mean.copy_(torch.as_tensor(stats.mean))
        self.obs_std.copy_(torch.as_tensor(stats.std))

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    # ------------------------------------------------------------------ validation
    def _check(self, obs: Tensor, act: Tensor | None = None) -> None:
        for label, value, dim in (("obs", obs, self.obs_dim), ("act", act, self.act_dim)):
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise InputError(f"{label} must be a torch.Tensor, got {type(value).__name__}; "
                                 "convert with torch.as_tensor(x, dtype=torch.float32)")
            if not value.is_floating_point():
                raise InputError(f"{label} must be a floating-point tensor, got {value.dtype}; "
                                 f"use {label}.float()")
            if value.dtype != self.obs_mean.dtype:  # else torch's "mat1 and mat2 must have the same dtype"
                raise InputError(f"{label} is {value.dtype} but the model's weights are {self.obs_mean.dtype}; "
                                 f"convert one of them ({label}.to({self.obs_mean.dtype}) or model.to({value.dtype}))")
            if value.ndim != 2 or value.shape[1] != dim:
                raise InputError(f"{label} must have shape [B, {dim}], got {list(value.shape)}")
            if value.device != self.device:
                raise InputError(f"{label} is on {value.device} but the model is on {self.device}; "
                                 f"move one of them (model.to(device) or {label}.to(device))")
        if act is not None and act.shape[0] != obs.shape[0]:
            raise InputError(f"obs and act must have the same batch size, got {obs.shape[0]} and {act.shape[0]}")

    def accepted_options(self, method: Literal["sample", "log_prob"]) -> tuple[str, ...] | None:
        """The keyword options ``sample`` or ``log_prob`` takes on this backend (those its hook
        names), or None when the hook takes any."""
        return _hook_options(getattr(type(self), f"_{method}"))

    def check_options(self, method: Literal["sample", "log_prob"], options: dict[str, Any]) -> None:
        """Refuse options ``method`` does not take here before any work is done with them, such as
        a sampler name meant for the score model given to a CVAE."""
        accepted = self.accepted_options(method)
        unknown = [] if accepted is None else sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"the {self.name} backend refused an option: its {method} takes no "
                              f"{', '.join(map(repr, unknown))} (its options: {', '.join(accepted) or 'none'}); "
                              "drop it, or use a backend that has it")

    # ------------------------------------------------------------------ public contract
    def forward(self, obs: Tensor) -> ConditionalBehavior:
        """``model(obs)``: beta(.|s) at the B states of ``obs`` [B, S] as a torch Distribution
        (``.sample((n,))`` [n, B, A], ``.log_prob(actions)``, ``.support_mask(actions)``); see
        :mod:`behavior_models.conditional`."""
        return ConditionalBehavior(self, obs)

    def log_prob(self, obs: Tensor, act: Tensor, **options: Any) -> Tensor:
        """log beta(act|obs) in nats per sample, [B]. What it is: see :attr:`log_prob_kind`."""
        self._check(obs, act)
        self.check_options("log_prob", options)
        return self._log_prob(self.normalize(obs), act, **options)

    def grad_log_prob(self, obs: Tensor, act: Tensor, **log_prob_options: Any) -> Tensor:
        """d/da log beta(a|s), [B, A]: natively where the backend has it, else by autograd of
        ``log_prob(obs, act, **log_prob_options)`` (e.g. the CVAE's estimator and its L)."""
        self._check(obs, act)
        if self.native_grad_log_prob:
            if log_prob_options:
                raise ConfigError(f"the {self.name} backend's grad_log_prob is native and takes no options; got "
                                  f"{', '.join(map(repr, sorted(log_prob_options)))}")
            return self._grad_log_prob(self.normalize(obs), act)
        if not self.differentiable_log_prob:
            raise BehaviorModelsError(f"the {self.name} backend's log_prob is not differentiable in the action; "
                                      "check model.capabilities()['grad_log_prob'] before calling grad_log_prob")
        self.check_options("log_prob", log_prob_options)
        with torch.enable_grad():
            act = act.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._log_prob(self.normalize(obs), act, **log_prob_options).sum(), act)
        return grad

    def sample(self, obs: Tensor, n: int = 1, **options: Any) -> Tensor:
        """[B, n, A] actions drawn from beta(.|obs), clipped to the action box [-1, 1]."""
        self._check(obs)
        self.check_options("sample", options)
        if n < 1:
            raise InputError(f"n must be >= 1, got {n}")
        return self._sample(self.normalize(obs), int(n), **options).clamp(-1.0, 1.0)

    def sample_and_log_prob(self, obs: Tensor, n: int, **sample_options: Any) -> tuple[Tensor, Tensor]:
        """Samples [B, n, A] (clipped to the box) and the log-probs [B, n] *of those clipped actions*.

        The default samples, then scores the returned actions with ``log_prob``. Backends that
        get a sample's log-prob for free (the score model's probability-flow ODE) override it,
        and must still re-score the samples that clipping moved.
        """
        actions = self.sample(obs, n, **sample_options)
        batch = obs.shape[0]
        log_probs = self.log_prob(obs.repeat_interleave(n, dim=0), actions.reshape(batch * n, self.act_dim))
        return actions, log_probs.reshape(batch, n)

    def resolve_threshold(self, threshold: float | None = None) -> float:
        if threshold is not None:
            return float(threshold)
        value = float(self.support_threshold)
        if math.isnan(value):
            raise BehaviorModelsError(
                f"this {self.name} model has no support threshold (`bm fit` calibrates one on its held-out "
                "episodes, so a model fitted with holdout_fraction=0 has none): pass a log-density instead "
                "(`--threshold -5`, threshold=-5), refit with holdout_fraction > 0, or call calibrate(transitions)")
        return value

    def support_mask(self, obs: Tensor, act: Tensor, threshold: float | None = None, **options: Any) -> Tensor:
        """True where ``act`` is in the behaviour support: log_prob >= threshold (a log-density).

        ``threshold=None`` uses the stored one (see :meth:`calibrate`); ARQ passes
        :data:`ARQ_LOG_THRESHOLD` = -5, i.e. beta >= e^-5. The stored threshold is compared as
        the device tensor it is, so a calibrated model's mask needs no host read.
        """
        calibrated = threshold is None and self.threshold_source != "none"
        limit = self.support_threshold if calibrated else self.resolve_threshold(threshold)
        return self.log_prob(obs, act, **options) >= limit

    @torch.no_grad()
    def calibrate(self, transitions: Transitions, quantile: float | None = None,
                  absolute: float | None = None, batch_size: int = 1024, **options: Any) -> float:
        """Store the support threshold and return it.

        Either ``absolute`` (a log-density, e.g. ARQ's -5) or the ``quantile`` (default: the
        config's ``support_quantile``) of log-probs on ``transitions``, which should be
        held-out data: on the training set the quantile is optimistic.
        """
        if absolute is not None:
            value, source = float(absolute), "absolute"
        else:
            quantile = self.config.support_quantile if quantile is None else quantile
            if not 0.0 < quantile < 1.0:
                raise ConfigError(f"quantile must be in (0, 1), got {quantile}")
            count = min(len(transitions), self.config.calibration_points)
            index = np.random.default_rng(self.config.seed).choice(len(transitions), count, replace=False)
            log_probs = self.batched_log_prob(transitions.observations[index], transitions.actions[index],
                                              batch_size=batch_size, **options)
            value, source = float(torch.quantile(log_probs.double(), quantile)), f"quantile={quantile:g}"
        self.support_threshold.fill_(value)
        self.threshold_source = source
        return value

    def batched_log_prob(self, observations: np.ndarray | Tensor, actions: np.ndarray | Tensor,
                         batch_size: int = 1024, **options: Any) -> Tensor:
        """log_prob over a large array in chunks of ``batch_size``; returns a CPU tensor."""
        results = []
        for start in range(0, len(observations), batch_size):
            obs = torch.as_tensor(observations[start:start + batch_size], dtype=self.obs_mean.dtype, device=self.device)
            act = torch.as_tensor(actions[start:start + batch_size], dtype=self.obs_mean.dtype, device=self.device)
            results.append(self.log_prob(obs, act, **options).detach().cpu())
        return torch.cat(results)

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "dataset_id": self.dataset_id,
            "dataset_fingerprint": self.dataset_fingerprint,
            "support_threshold": None if math.isnan(float(self.support_threshold)) else float(self.support_threshold),
            "threshold_source": self.threshold_source,
            "normalization": {"mean": self.obs_mean.tolist(), "std": self.obs_std.tolist()},
            "capabilities": self.capabilities(),
            "library_version": __version__,
        }

    def save(self, directory: str | Path) -> Path:
        """Write weights (``weights.pt``), ``config.json`` and ``model.json`` into ``directory``.

        Each file is written atomically, and ``model.json`` last, holding the SHA-256 of
        ``weights.pt``: a save interrupted between the files (say, ``bm fit --resume --steps``
        over a finished model) leaves new weights beside the old ``model.json``, which
        :meth:`from_directory` then refuses instead of pairing them with a stale threshold.
        """
        from behavior_models.io import atomic_path, file_sha256

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(state, tmp)
        save_config(directory / CONFIG_FILE, self.config)
        weights_sha256 = file_sha256(directory / WEIGHTS_FILE)
        write_json_atomic(directory / MODEL_FILE, {**self.metadata(), "weights_sha256": weights_sha256})
        return directory

    @classmethod
    def from_directory(cls, directory: str | Path, device: str | torch.device = "cpu") -> "BehaviorModel":
        from behavior_models.io import file_sha256, load_torch_artefact, read_json_artefact

        directory = Path(directory)
        fix = (f"refit with `bm fit --model {cls.name} --dataset DATASET --out {directory} --force`, or copy all of "
               "a run's files together")
        meta = read_json_artefact(directory / MODEL_FILE, fix)
        missing = [key for key in ("backend", "obs_dim", "act_dim") if key not in meta]
        if missing:
            raise ArtefactMismatchError(f"{directory / MODEL_FILE} lacks {', '.join(missing)}: it is not a behavior "
                                        f"model's record; {fix}")
        if meta["backend"] != cls.name:
            raise ArtefactMismatchError(f"{directory} holds a {meta['backend']} model, not {cls.name}")
        config = config_from_dict(cls.config_class, read_json_artefact(directory / CONFIG_FILE, fix))
        model = cls(meta["obs_dim"], meta["act_dim"], config)
        if "weights_sha256" in meta and (directory / WEIGHTS_FILE).is_file() \
                and file_sha256(directory / WEIGHTS_FILE) != meta["weights_sha256"]:
            raise ArtefactMismatchError(
                f"{directory / WEIGHTS_FILE} is not the weights its {MODEL_FILE} was written with (a save "
                f"interrupted between the two files, or files of different fits); rerun the same `bm fit ... --out "
                f"{directory} --resume` to finish the save, or {fix}")
        state = load_torch_artefact(directory / WEIGHTS_FILE, fix)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # missing/unexpected keys or size mismatches
            raise ArtefactMismatchError(
                f"{directory / WEIGHTS_FILE} does not fit the {cls.name} model of its {CONFIG_FILE} (networks of "
                f"another shape: {first_lines(error)}); the files come from different fits. Refit with `bm fit --model {cls.name} "
                f"--dataset DATASET --out {directory} --force`, or copy all of a run's files together.") from None
        model.threshold_source = meta.get("threshold_source", "none")
        model.dataset_id = meta.get("dataset_id", "")
        model.dataset_fingerprint = meta.get("dataset_fingerprint", "")
        return model.to(device).eval()

    @classmethod
    def fit(cls, transitions: Transitions, config: BehaviorModelConfig | None = None, *,
            out_dir: str | Path | None = None, device: str | torch.device = "cpu", resume: bool = False,
            force: bool = False, progress: bool = True) -> "BehaviorModel":
        """Fit on ``transitions`` with the generic loop of :mod:`behavior_models.training`."""
        from behavior_models.training import fit_model

        return fit_model(cls, transitions, config or cls.config_class(), out_dir=out_dir, device=device,
                         resume=resume, force=force, progress=progress)


def config_dict(model: BehaviorModel) -> dict[str, Any]:
    return config_to_dict(model.config)
