"""SPOT's AntMaze settings (ALGORITHMS.md "SPOT") resolve from the dataset id; user values are kept."""

import pytest

from behavior_models import BACKENDS, backend_class
from behavior_models.errors import ConfigError
from rl.algos.spot import SPOT, SPOTConfig, resolve_density


@pytest.mark.parametrize("dataset_id, expected", [
    ("local/pointmaze-umaze-biased-v0", (1e-4, False, 1e-3, 3e-3, 0.0)),
    ("D4RL/antmaze/umaze-v1", (1e-4, False, 1e-3, 3e-3, 0.0)),
    ("mujoco/hopper/medium-v0", (3e-4, True, 0.0, 0.0, 0.1)),
    ("D4RL/kitchen/mixed-v2", (3e-4, True, 0.0, 0.0, 0.1)),
])
def test_unset_fields_take_the_domain_settings(dataset_id, expected):
    """thuml/SPOT's configs/offline/*.yml: the AntMaze ones set actor_lr, antmaze_no_normalize,
    actor_init_w, critic_init_w and actor_dropout 0; the locomotion ones keep main.py's defaults."""
    config = SPOT.resolve_config(SPOTConfig(), dataset_id, steps=100)
    assert (config.actor_lr, config.normalize_states, config.actor_head_init, config.critic_head_init,
            config.actor_dropout) == expected


def test_fields_set_by_the_user_are_kept():
    config = SPOT.resolve_config(SPOTConfig(actor_lr=5e-4, normalize_states=True), "D4RL/antmaze/umaze-v1", 100)
    assert (config.actor_lr, config.normalize_states) == (5e-4, True)


def test_auto_density_takes_the_native_score_where_there_is_one():
    """spot.py / ALGORITHMS.md "SPOT": density=auto uses the score model's native score (its log_prob is an
    ODE solve without autograd), autograd through log_prob for the other density backends, and refuses the
    GAN's unnormalised log-ratio."""
    for name in BACKENDS:
        capabilities = backend_class(name).capabilities()
        if capabilities["log_prob_kind"] == "unnormalized":
            with pytest.raises(ConfigError, match="unnormalised"):
                resolve_density("auto", capabilities, name)
        else:
            expected = "grad_log_prob" if name == "score" else "log_prob"
            assert resolve_density("auto", capabilities, name) == expected, name
    assert "score" in BACKENDS and "gan" in BACKENDS
