"""Fixtures for the RL tests: one tiny real-environment dataset, a Gaussian behavior model."""

from __future__ import annotations

import pytest
import torch

from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from tests.rl.helpers import write_env_dataset


@pytest.fixture
def env_transitions():
    torch.set_num_threads(1)
    return write_env_dataset("test/mcar-v0")


@pytest.fixture
def gaussian_dir(env_transitions, tmp_path):
    out = tmp_path / "gaussian"
    GaussianBehaviorModel.fit(env_transitions, GaussianConfig(steps=100, hidden=(16, 16)), out_dir=out, progress=False)
    return out
