"""TD3 (Fujimoto et al., 2018): the skeleton that TD3+BC / TD3BC++ (seed 001) and SPOT (seed 004)
regularise, written once. A deterministic actor, twin critics and their target copies; one
update is, in TD3's order:

1. critic: J_Q(theta) = sum_j E_D[(Q_j(s, a) - y)^2] with the clipped double-Q target with target
   policy smoothing, y = r + gamma (1 - done) min_j Q'_j(s', clip(pi'(s') + clip(sigma eps, -c, c), -1, 1))
   (:func:`~rl.core.regularizers.td3_target`);
2. every ``policy_freq``-th update: one actor step on the subclass's :meth:`TD3Family.actor_loss`
   with the critic frozen, then polyak updates of both targets.

A subclass writes its actor loss (the paper's equation) and may extend :meth:`critic_loss`.
"""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass

from torch import Tensor

from behavior_models.errors import ConfigError, require_at_least
from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs, adam, step
from rl.core.buffer import Batch
from rl.core.networks import DeterministicActor, QEnsemble, evaluation_mode, frozen, soft_update
from rl.core.regularizers import critic_loss, td3_target


@dataclass(frozen=True)
class TD3Config(AlgoConfig):
    batch_size: int = 256  # TD3 / TD3+BC
    hidden: tuple[int, ...] = (256, 256)  # actor and critics (TD3+BC)
    actor_lr: float = 3e-4  # TD3+BC
    critic_lr: float = 3e-4  # TD3+BC
    tau: float = 0.005  # polyak rate of the target networks (TD3)
    policy_noise: float = 0.2  # target policy smoothing std (TD3)
    noise_clip: float = 0.5  # target policy smoothing clip (TD3)
    policy_freq: int = 2  # actor and target updates every this many critic updates (TD3)
    actor_head_init: float = 0.0  # U(-w, w) init of the actor's output layer; 0 keeps nn.Linear's, as TD3
    critic_head_init: float = 0.0  # likewise for each critic's output layer
    actor_dropout: float = 0.0  # dropout on the actor's hidden units while training (acting uses none)

    def __post_init__(self) -> None:
        super().__post_init__()
        # policy_freq 0 divides by zero at the first update; a negative bound is no distribution
        require_at_least(self, {"policy_freq": 1, "actor_head_init": 0.0, "critic_head_init": 0.0})
        if self.actor_dropout is not None and not 0.0 <= self.actor_dropout < 1.0:
            raise ConfigError(f"{type(self).__name__}.actor_dropout must be in [0, 1), got {self.actor_dropout}")


class TD3Family(Algorithm, abc.ABC):
    config: TD3Config

    def __init__(self, config: TD3Config, obs_dim: int, act_dim: int, device="cpu",
                 behavior: BehaviorInputs | None = None) -> None:
        super().__init__(config, obs_dim, act_dim, device, behavior)
        self.actor = DeterministicActor(obs_dim, act_dim, config.hidden, config.actor_head_init,
                                        config.actor_dropout).to(self.device)
        # Left in training mode: with actor dropout its target actions take a mask too, as in
        # SPOT's released code, whose target actor is a copy never switched to eval.
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden, 2, config.critic_head_init).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {"actor": adam(self.actor.parameters(), config.actor_lr),
                           "critic": adam(self.critic.parameters(), config.critic_lr)}
        self._actor_metrics: dict[str, Tensor] = {}  # the last actor step's, logged between actor steps

    def td3_target(self, batch: Batch) -> Tensor:
        """y of the critic loss [B], without gradient."""
        c = self.config
        return td3_target(self.actor_target, self.critic_target, batch.rewards, batch.next_observations,
                          batch.dones, c.gamma, c.policy_noise, c.noise_clip)

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """TD3's critic loss, what to log, and the step's detached Q_j(s, a) [2, B]."""
        return critic_loss(self.critic, batch.observations, batch.actions, self.td3_target(batch))

    @abc.abstractmethod
    def actor_loss(self, batch: Batch, data_q: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The actor's loss on ``batch`` and what to log; ``data_q`` [2, B] are the critic step's
        Q_j(s, a) at the dataset actions (before that step's gradient), for losses that weight by them."""

    def update(self, batch: Batch) -> dict[str, Tensor]:
        q_loss, metrics, data_q = self.critic_loss(batch)
        step(self.optimizers["critic"], q_loss)
        self.updates += 1
        if self.updates % self.config.policy_freq == 0:
            with frozen(self.critic):  # the actor trains through Q; the critic's weights take no gradient
                loss, self._actor_metrics = self.actor_loss(batch, data_q)
                step(self.optimizers["actor"], loss)
            soft_update(self.critic_target, self.critic, self.config.tau)
            soft_update(self.actor_target, self.actor, self.config.tau)
        return {**metrics, **self._actor_metrics}

    def act(self, obs: Tensor, raw_obs: Tensor, deterministic: bool = True) -> Tensor:
        with evaluation_mode(self.actor):  # TD3's actor is deterministic: no dropout when acting
            return self.actor(obs)

    # The last actor step's metrics are checkpointed, so a resumed run logs what an uninterrupted one does.
    def get_extra_state(self) -> dict[str, object]:
        return {**super().get_extra_state(), "actor_metrics": dict(self._actor_metrics)}

    def set_extra_state(self, state: dict[str, object]) -> None:
        super().set_extra_state(state)
        self._actor_metrics = dict(state.get("actor_metrics", {}))
