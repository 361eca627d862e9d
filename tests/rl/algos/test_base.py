"""Every algorithm's config refuses values that would train on nan or crash mid-run (rl/algos/base.py)."""

import pytest

from behavior_models.errors import ConfigError
from rl.algos import ALGORITHMS, algorithm_class

CONFIG_CLASSES = sorted({algorithm_class(name).config_class for name in ALGORITHMS}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_learning_rates_widths_batch_tau_and_gamma_out_of_range_are_refused(config_class):
    fields = {field for field in config_class.__dataclass_fields__}
    bad = {"batch_size": 0, "gamma": 1.5, "state_eps": -1e-3}
    bad |= {name: -1e-3 for name in fields if name == "lr" or name.endswith("_lr")}
    bad |= {name: () for name in fields if name == "hidden" or name.endswith("_hidden")}
    if "tau" in fields:
        bad["tau"] = 5.0
    assert len(bad) >= 4  # batch, gamma, at least one learning rate and one network
    for name, value in bad.items():
        with pytest.raises(ConfigError, match=rf"{config_class.__name__}\.{name} must"):
            config_class(**{name: value})
    config_class()  # the defaults pass


COUNTS = {"policy_freq": 0, "gp_every": 0, "gp_actions": 0, "target_samples": 0, "mmd_samples": 0,
          "eval_samples": 0, "num_q": 0, "cvae_samples": 0, "mmd_sigma": 0.0}


@pytest.mark.parametrize("config_class,name", [(cls, name) for cls in CONFIG_CLASSES for name in COUNTS
                                               if name in cls.__dataclass_fields__],
                         ids=lambda value: getattr(value, "__name__", value))
def test_counts_and_widths_that_would_crash_the_first_updates_are_refused(config_class, name):
    """These used to be accepted and then fail mid-run with a raw Python error (gp_every=0: a
    ZeroDivisionError at the first update even with the penalty off) or train on nan."""
    with pytest.raises(ConfigError, match=rf"{config_class.__name__}\.{name} must be"):
        config_class(**{name: COUNTS[name]})


def test_arq_weights_that_would_stop_or_invert_the_policy_update_are_refused():
    """awr_max_weight=0 made every AWR weight 0: the explicit policy never moved (effective fraction nan)."""
    from rl.algos.arq import ARQConfig

    for name, value in (("awr_max_weight", 0.0), ("awr_max_weight", -1.0), ("alpha", -1.0)):
        with pytest.raises(ConfigError, match=rf"ARQConfig\.{name} must be"):
            ARQConfig(**{name: value})
    ARQConfig(alpha=0.0)  # a flat softmax: legal


def test_an_unknown_cvae_estimator_is_refused_before_training():
    from rl.algos.spot import SPOTConfig

    with pytest.raises(ConfigError, match="SPOTConfig.cvae_estimator must be one of .*got 'ebo'"):
        SPOTConfig(cvae_estimator="ebo")
    SPOTConfig(cvae_estimator="iw")


def test_a_negative_gradient_penalty_is_refused():
    from rl.algos.td3bc import TD3BCPlusPlusConfig

    with pytest.raises(ConfigError, match="gradient_penalty .* must be >= 0, got -1"):
        TD3BCPlusPlusConfig(gradient_penalty=-1)
