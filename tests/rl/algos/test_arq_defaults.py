"""ARQ's per-domain defaults come from seed 002's Tables A.2/A.3, resolved from the dataset id; the
documented fallback for rows that keep no cached candidate."""

import math

import pytest
import torch

from behavior_models.errors import ConfigError
from cli.rl_train import parse_override
from rl.algos.arq import ARQ, ARQConfig, effective_keep
from rl.core.tasks import task_family


@pytest.mark.parametrize("dataset_id, family, expected", [
    ("local/pointmaze-umaze-biased-v0", "antmaze", (3e-4, 3, 10.0, "deterministic")),
    ("D4RL/antmaze/umaze-v1", "antmaze", (3e-4, 3, 10.0, "deterministic")),
    ("mujoco/hopper/medium-v0", "locomotion", (3e-4, 9, 1.0, "gaussian")),
    ("D4RL/kitchen/mixed-v2", "kitchen", (1e-4, 9, 1.0, "gaussian")),
    ("D4RL/pen/human-v2", "adroit", (1e-4, 9, 10.0, "gaussian")),
])
def test_unset_fields_take_the_dataset_family_column(dataset_id, family, expected):
    assert task_family(dataset_id) == family
    config = ARQ.resolve_config(ARQConfig(), dataset_id, steps=100)
    assert (config.q_lr, config.k, config.alpha, config.actor_type) == expected


def test_fields_set_by_the_user_are_kept():
    config = ARQ.resolve_config(ARQConfig(k=5, alpha=0.5), "local/pointmaze-umaze-biased-v0", steps=100)
    assert (config.k, config.alpha, config.actor_type) == (5, 0.5, "deterministic")


def test_cli_set_types_the_per_domain_fields():
    # These fields default to None (resolved later from the dataset id): --set types them by
    # their declared type (X | None), so null means "resolve from the dataset id".
    assert parse_override(ARQConfig, "actor_type=gaussian") == ("actor_type", "gaussian")
    assert parse_override(ARQConfig, "q_lr=1e-4") == ("q_lr", 1e-4)
    assert parse_override(ARQConfig, "k=5") == ("k", 5)
    assert parse_override(ARQConfig, "alpha=null") == ("alpha", None)
    config = ARQ.resolve_config(ARQConfig(actor_type="gaussian"), "local/pointmaze-umaze-biased-v0", steps=100)
    assert (config.actor_type, config.k) == ("gaussian", 3)


def test_rows_that_keep_no_candidate_fall_back_as_documented():
    """Eq. 5 needs at least one kept candidate per row: the fallback keeps the highest cached
    log-density (the first candidate when the cache has none, NaN) or every candidate."""
    in_support = torch.tensor([[True, False, False], [False, False, False], [False, False, False]])
    log_probs = torch.tensor([[0.0, 5.0, 1.0], [1.0, 3.0, 2.0], [math.nan] * 3])
    highest = effective_keep(in_support, log_probs, use_support_mask=True, fallback="highest_log_prob")
    assert highest.tolist() == [[True, False, False], [False, True, False], [True, False, False]]
    everything = effective_keep(in_support, log_probs, use_support_mask=True, fallback="all")
    assert everything.tolist() == [[True, False, False], [True, True, True], [True, True, True]]
    unmasked = effective_keep(in_support, log_probs, use_support_mask=False, fallback="highest_log_prob")
    assert unmasked.all()
    with pytest.raises(ConfigError, match="unknown empty_fallback"):
        effective_keep(in_support, log_probs, use_support_mask=True, fallback="none")
