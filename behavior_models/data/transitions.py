"""The ``Transitions`` record every model and algorithm consumes, and state normalisation.

Layout (ALGORITHMS.md, "Conventions"): a Minari episode stores T+1 observations and T
actions; it yields T transitions (s_t, a_t, r_t, s_{t+1}, done_t) with done = termination
only (a truncation is not a terminal for bootstrapping). The next action a' = a_{t+1} comes
from the same episode, so it is invalid for the last step of every episode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from behavior_models.errors import DatasetError
from behavior_models.io import fingerprint_arrays


@dataclass(frozen=True)
class DatasetInfo:
    """What a consumer needs to know about a dataset besides its arrays."""

    dataset_id: str
    obs_dim: int
    act_dim: int
    num_episodes: int
    num_transitions: int
    observation_keys: tuple[str, ...] = ()  # flatten order of dict observations; () for flat ones
    observation_sizes: tuple[int, ...] = ()  # columns of each of observation_keys, in the same order
    # Which view of the recorded transitions this is (behavior_models.data.goals): "keep" (as
    # recorded) or "relabel" (each goal switch relabelled to the goal the step started with).
    goal_switch: str = "keep"
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    has_env_spec: bool = False
    has_eval_env_spec: bool = False
    clipped_action_entries: int = 0  # entries outside the declared box, clipped at load time

    @property
    def has_reference_scores(self) -> bool:
        return self.ref_min_score is not None and self.ref_max_score is not None

    def normalized_score(self, returns: np.ndarray) -> np.ndarray:
        """D4RL score: 100 * (R - ref_min) / (ref_max - ref_min)."""
        if not self.has_reference_scores:
            raise ValueError(f"dataset {self.dataset_id} has no reference scores")
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


@dataclass(frozen=True)
class NormalizationStats:
    """Per-dimension state mean and std (std already includes ``eps``)."""

    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, payload: dict[str, list[float]]) -> "NormalizationStats":
        return cls(np.asarray(payload["mean"], np.float32), np.asarray(payload["std"], np.float32))

    @classmethod
    def identity(cls, dim: int) -> "NormalizationStats":
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        return (observations - self.mean) / self.std


@dataclass(frozen=True, eq=False)
class Transitions:
    """All transitions of a dataset as flat numpy arrays (float32 / bool / int64)."""

    observations: np.ndarray  # [N, S]
    actions: np.ndarray  # [N, A]
    rewards: np.ndarray  # [N]
    next_observations: np.ndarray  # [N, S]
    next_actions: np.ndarray  # [N, A]; zeros where next_action_valid is False
    next_action_valid: np.ndarray  # [N] bool: a' exists in the same episode
    terminals: np.ndarray  # [N] bool: termination only
    timeouts: np.ndarray  # [N] bool: truncation
    episode_ids: np.ndarray  # [N] int64
    timesteps: np.ndarray  # [N] int64: t within the episode
    info: DatasetInfo
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", self.compute_fingerprint())

    def compute_fingerprint(self) -> str:
        return fingerprint_arrays(
            self.observations, self.actions, self.rewards, self.next_observations,
            self.terminals, self.timeouts, self.episode_ids,
        )

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def dataset_id(self) -> str:
        return self.info.dataset_id

    @property
    def episode_ends(self) -> np.ndarray:
        """[N] bool: the last transition of its episode (terminal, truncated or cut)."""
        return np.append(self.episode_ids[1:] != self.episode_ids[:-1], True)

    def state_stats(self, eps: float = 1e-3) -> NormalizationStats:
        """Mean and std (+eps) of the observations, computed in float64 for stability."""
        obs = self.observations.astype(np.float64)
        return NormalizationStats(obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32))

    def boundary_fraction(self, atol: float = 0.0) -> float:
        """Fraction of action entries sitting on the [-1, 1] box boundary (within ``atol``)."""
        return float(np.mean(np.abs(self.actions) >= 1.0 - atol))

    def require_unit_action_box(self) -> None:
        """Raise DatasetError unless the dataset declares the action box [-1, 1]^A.

        Every behavior model clips its samples to [-1, 1] (and the density backends clamp their
        inputs just inside it), and every RL actor is squashed into it, so actions from another
        box would be learned wrongly and silently (gymnasium MuJoCo tasks with other boxes:
        InvertedPendulum's [-3, 3], Pusher's [-2, 2], Humanoid's [-0.4, 0.4])."""
        low, high = self.info.action_low, self.info.action_high
        if any(x != -1.0 for x in low) or any(x != 1.0 for x in high):
            raise DatasetError(
                f"{self.dataset_id}: its declared action box is low {list(low)}, high {list(high)}, not [-1, 1]; "
                "behavior models and RL algorithms here work in [-1, 1]^A, and do not rescale a dataset's actions. "
                "For a dataset you build, rescale the actions to [-1, 1] (and the environment with "
                "gymnasium.wrappers.RescaleAction); a downloaded one with another box is not supported.")

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, in episode order."""
        _, first = np.unique(self.episode_ids, return_index=True)
        return np.add.reduceat(self.rewards.astype(np.float64), np.sort(first))

    def subset(self, index: np.ndarray) -> "Transitions":
        """The transitions at ``index`` (a boolean mask or integer index), metadata kept."""
        arrays = {
            f.name: getattr(self, f.name)[index]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return Transitions(**arrays, info=self.info)

    def split_episodes(self, holdout_fraction: float, seed: int) -> tuple["Transitions", "Transitions"]:
        """(train, held-out) split by whole episodes, so held-out states are unseen.

        With a single episode the split falls back to transitions (the last fraction), since
        there is no other way to hold anything out. A fraction of 0 holds out nothing; any
        positive fraction at least one episode.
        """
        episodes = np.unique(self.episode_ids)
        if len(episodes) >= 2:
            rng = np.random.default_rng(seed)
            count = int(round(holdout_fraction * len(episodes)))
            count = max(1, count) if holdout_fraction > 0 else 0
            held = rng.choice(episodes, size=min(count, len(episodes) - 1), replace=False)
            mask = np.isin(self.episode_ids, held)
        else:
            mask = np.zeros(len(self), bool)
            mask[int((1.0 - holdout_fraction) * len(self)):] = True
        return self.subset(~mask), self.subset(mask)
