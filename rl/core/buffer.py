"""The dataset on the device, and uniform minibatches drawn there.

Every column an algorithm may need is packed into one float32 matrix ``[N, D]`` on the
device, so a minibatch is one ``torch.randint`` and one ``index_select`` on the device: no
host copy and no Python loop per step. The :class:`Batch` fields are views into that gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from behavior_models.data import NormalizationStats, Transitions


@dataclass(frozen=True)
class Batch:
    """One minibatch. Observations are normalised for the networks; ``raw_*`` are as stored
    (behavior models normalise their own inputs)."""

    observations: Tensor  # [B, S] normalised
    actions: Tensor  # [B, A]
    rewards: Tensor  # [B] after the run's reward transform
    next_observations: Tensor  # [B, S] normalised
    next_actions: Tensor  # [B, A]; zeros where next_action_valid is 0
    next_action_valid: Tensor  # [B] float 0/1
    dones: Tensor  # [B] float 0/1: termination only (a truncation still bootstraps)
    raw_observations: Tensor  # [B, S]
    raw_next_observations: Tensor  # [B, S]
    indices: Tensor  # [B] int64 row of each transition in the dataset


class DeviceBuffer:
    """All transitions of a dataset as one device matrix, with uniform sampling."""

    def __init__(self, transitions: Transitions, rewards: np.ndarray, stats: NormalizationStats,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.size = len(transitions)
        self.obs_dim, self.act_dim = transitions.obs_dim, transitions.act_dim
        self.stats = stats
        columns = [
            ("observations", stats.normalize(transitions.observations)),
            ("actions", transitions.actions),
            ("rewards", rewards[:, None]),
            ("next_observations", stats.normalize(transitions.next_observations)),
            ("next_actions", transitions.next_actions),
            ("next_action_valid", transitions.next_action_valid[:, None]),
            ("dones", transitions.terminals[:, None]),
            ("raw_observations", transitions.observations),
            ("raw_next_observations", transitions.next_observations),
        ]
        self._slices: dict[str, slice] = {}
        start = 0
        for name, column in columns:
            self._slices[name] = slice(start, start + column.shape[1])
            start += column.shape[1]
        packed = np.concatenate([np.asarray(column, np.float32) for _, column in columns], axis=1)
        self.data = torch.as_tensor(packed, device=self.device)

    def column(self, name: str) -> Tensor:
        """A whole column as a ``[N, d]`` view (``[N]`` for scalar columns)."""
        value = self.data[:, self._slices[name]]
        return value.squeeze(1) if value.shape[1] == 1 else value

    def get(self, indices: Tensor) -> Batch:
        rows = self.data.index_select(0, indices)
        fields = {name: rows[:, piece] for name, piece in self._slices.items()}
        for name in ("rewards", "next_action_valid", "dones"):
            fields[name] = fields[name].squeeze(1)
        return Batch(**fields, indices=indices)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A uniform minibatch (with replacement), drawn on the device from ``generator``."""
        indices = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return self.get(indices)
