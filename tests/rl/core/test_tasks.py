"""The task family behind every per-domain default, on the ids researchers actually pass."""

import pytest

from rl.core.tasks import task_family


@pytest.mark.parametrize("dataset_id, family", [
    ("local/pointmaze-umaze-biased-v0", "antmaze"),
    ("pointmaze-medium-noisy", "antmaze"),
    ("D4RL/pointmaze/large-v2", "antmaze"),
    ("D4RL/antmaze/medium-diverse-v1", "antmaze"),
    ("D4RL/kitchen/mixed-v2", "kitchen"),
    ("kitchen-mixed", "kitchen"),
    ("D4RL/pen/human-v2", "adroit"),
    ("D4RL/door/expert-v2", "adroit"),
    ("D4RL/hammer/cloned-v2", "adroit"),
    ("D4RL/relocate/human-v2", "adroit"),
    ("mujoco/hopper/medium-v0", "locomotion"),
    ("mujoco/invertedpendulum/medium-v0", "locomotion"),
    ("mujoco/inverteddoublependulum/expert-v0", "locomotion"),
    ("mujoco/halfcheetah/simple-v0", "locomotion"),
])
def test_family_of_dataset_ids(dataset_id, family):
    assert task_family(dataset_id) == family
