"""What every algorithm is: a module of networks, its optimisers, ``update(batch)`` and ``act``.

An algorithm is an :class:`torch.nn.Module` so that one ``state_dict`` holds every network
and target network (and, through ``get_extra_state``, its update counter); its optimisers sit
in ``self.optimizers`` by name. Frozen inputs (a behavior model, a sample cache) are held
*outside* the module tree, so they are never saved in checkpoints or trained.

The trainer (:mod:`rl.core.trainer`) owns everything else: minibatches, seeds, logging,
evaluation and checkpoints.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from behavior_models.errors import ConfigError
from behavior_models.nets import adam  # noqa: F401  (every algorithm's optimiser, imported from here)
from rl.core.buffer import Batch

BehaviorKind = Literal["none", "cache", "model"]


@dataclass(frozen=True)
class AlgoConfig:
    """Fields every algorithm's config shares; each algorithm subclasses it."""

    batch_size: int = 256
    gamma: float = 0.99  # discount
    # Reward convention (rl.core.rewards): auto | none | minus_one | return_range. `auto` is
    # resolved from the dataset id before training; config.json records the resolved name.
    reward_transform: str = "auto"
    # Goal-switch view (rl.core.rewards, behavior_models.data.goals): auto | keep | relabel. `auto`
    # relabels on maze ids; config.json records the resolved name.
    goal_switch: str = "auto"
    normalize_states: bool = True  # z-score observations with dataset statistics (TD3+BC style)
    state_eps: float = 1e-3  # added to the state std

    def __post_init__(self) -> None:
        """Refuse values that would train on nan or crash mid-run, by the fields' naming convention
        (every config here follows it): learning rates ``lr``/``*_lr`` > 0, network widths
        ``hidden``/``*_hidden`` non-empty and >= 1, ``tau`` in (0, 1], ``gamma`` in [0, 1], ``state_eps`` >= 0."""
        name = type(self).__name__
        problems = [f"{name}.batch_size must be at least 1, got {self.batch_size}"] if self.batch_size < 1 else []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:  # resolved later from the dataset (ARQ's q_lr, SPOT's actor_lr, ...)
                continue
            if (field.name == "lr" or field.name.endswith("_lr")) and not value > 0:
                problems.append(f"{name}.{field.name} must be > 0, got {value}")
            if (field.name == "hidden" or field.name.endswith("_hidden")) and (
                    not value or any(int(width) < 1 for width in value)):
                problems.append(f"{name}.{field.name} must list layer widths >= 1, got {value!r}")
        if hasattr(self, "tau") and not 0 < self.tau <= 1:
            problems.append(f"{name}.tau must be in (0, 1], got {self.tau}")
        if not self.state_eps >= 0:
            problems.append(f"{name}.state_eps must be >= 0, got {self.state_eps}")
        if not 0 <= self.gamma <= 1:
            problems.append(f"{name}.gamma must be in [0, 1], got {self.gamma}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class BehaviorInputs:
    """The frozen behaviour artefacts a run was given (either may be None)."""

    cache: Any = None  # a behavior_models.SampleCache (or anything with its fields)
    model: Any = None  # a behavior_models.base.BehaviorModel
    cache_path: str | None = None
    model_dir: str | None = None


class Algorithm(nn.Module, abc.ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[AlgoConfig]] = AlgoConfig
    # What --behavior must be: nothing, a sample cache (.npz) or a behavior-model directory.
    behavior_kind: ClassVar[BehaviorKind] = "none"
    # What reward_transform="auto" means on MuJoCo locomotion (rl.core.rewards): the algorithm
    # paper's own convention. Raw rewards unless a subclass cites otherwise.
    locomotion_reward: ClassVar[str] = "none"
    # Config fields that change only how a trained algorithm acts, never what it learns: a finished
    # run may be evaluated with other values (``rl eval --set``), e.g. ARQ's implicit policy from
    # the critic that was trained beside its explicit one (Algorithm 1 returns both).
    acting_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: AlgoConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        super().__init__()
        self.config = config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = torch.device(device)
        self.behavior = behavior or BehaviorInputs()
        self.updates = 0  # number of update() calls so far; checkpointed through get_extra_state
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, Tensor | float]:
        """One gradient step; returns detached scalar tensors on the device, or Python floats for
        values known on the host (read only when logged)."""

    @abc.abstractmethod
    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        """Actions [B, A] in [-1, 1] for normalised ``obs`` (``raw_obs`` for behavior models)."""

    @classmethod
    def resolve_config(cls, config: AlgoConfig, dataset_id: str, steps: int) -> AlgoConfig:
        """Fill the defaults that depend on the dataset or on the step budget (fields left
        ``None``), before training; config.json records the resolved values. Default: none."""
        return config

    @classmethod
    def needs_behavior_model(cls, config: AlgoConfig) -> bool:
        """True if, with ``config``, a cache-based algorithm also samples the model itself."""
        return False

    @classmethod
    def with_acting(cls, config: AlgoConfig, acting: dict[str, Any]) -> AlgoConfig:
        """``config`` with the acting fields in ``acting`` replaced; any other field is refused,
        since changing it after training would evaluate a config the networks were not trained for."""
        learned = sorted(set(acting) - set(cls.acting_fields))
        if learned:
            allowed = ", ".join(cls.acting_fields) or "none"
            raise ConfigError(f"{cls.name}: {', '.join(learned)} changes what is trained, so it cannot change after "
                              f"training (retrain with --set instead); fields that may change at evaluation: {allowed}")
        return dataclasses.replace(config, **acting)

    def set_acting(self, **acting: Any) -> None:
        """Act with other values of the acting fields from now on (see :meth:`with_acting`)."""
        config = self.with_acting(self.config, acting)
        self.check_acting(config)
        self.config = config

    def check_acting(self, config: AlgoConfig) -> None:
        """Raise ConfigError if this algorithm, as built and trained, cannot act with ``config``."""

    def describe(self) -> dict[str, Any]:
        """Derived settings worth recording (config.json ``algorithm_info``, printed at start)."""
        return {}

    def warnings(self) -> list[str]:
        """Problems with the inputs that training would not stop on but the user must hear of
        (printed at start), e.g. a sample cache whose threshold rejects nearly every candidate."""
        return []

    def get_extra_state(self) -> dict[str, int]:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.updates = int(state["updates"])

    def optimizer_state(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


def step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """zero_grad, backward, step: the three lines every update repeats."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
