"""`rl train` / `rl eval` option checking: --set values typed by the config field, counts in range,
--reward's help read from each algorithm. None of these need a dataset: they fail (or pass) first."""

import pytest
from click.testing import CliRunner

from behavior_models.errors import ConfigError
from cli.rl import main as rl
from cli.rl_train import parse_override
from rl.algos.arq import ARQConfig
from rl.algos.spot import SPOTConfig


@pytest.mark.parametrize("config_cls, assignment, expected", [
    (SPOTConfig, "normalize_states=False", ("normalize_states", False)),  # was the truthy string 'False'
    (SPOTConfig, "normalize_states=none", ("normalize_states", None)),
    (ARQConfig, "alpha=1e-3", ("alpha", 1e-3)),
    (ARQConfig, "k=3", ("k", 3)),
    (ARQConfig, "hidden=64,64", ("hidden", (64, 64))),
    (ARQConfig, "hidden=[64, 64]", ("hidden", (64, 64))),
    (ARQConfig, "use_support_mask=0", ("use_support_mask", False)),
])
def test_set_values_take_the_declared_type(config_cls, assignment, expected):
    assert parse_override(config_cls, assignment) == expected


@pytest.mark.parametrize("assignment, message", [
    ("alpha=1e-3x", "ARQConfig.alpha takes a number or null (none), got '1e-3x'"),
    ("k=3.5", "ARQConfig.k takes an integer or null (none), got '3.5'"),
    ("use_support_mask=maybe", "ARQConfig.use_support_mask takes a boolean (true/false/1/0), got 'maybe'"),
])
def test_set_values_of_the_wrong_type_are_refused(assignment, message):
    with pytest.raises(ConfigError) as error:
        parse_override(ARQConfig, assignment)
    assert str(error.value) == f"--set {assignment}: {message}"


def test_a_mistyped_set_is_a_clear_cli_error():
    result = CliRunner().invoke(rl, ["train", "spot", "--dataset", "test/absent-v0", "--set", "normalize_states=yes"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "SPOTConfig.normalize_states takes a boolean (true/false/1/0) or null (none), got 'yes'" in result.output


@pytest.mark.parametrize("option", ["--steps", "--batch-size", "--checkpoint-every", "--log-every", "--threads"])
def test_train_counts_below_one_are_refused(option):
    result = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", option, "0"])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def test_train_accepts_zero_where_zero_has_a_meaning():
    # --eval-every 0: evaluate at the end only; --eval-episodes 0: no evaluation. Parsing passes,
    # and the run stops at the missing dataset instead.
    result = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", "--eval-every", "0",
                                     "--eval-episodes", "0"])
    assert result.exit_code == 1 and "test/absent-v0" in result.output and "Invalid value" not in result.output
    refused = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", "--eval-every", "-1"])
    assert refused.exit_code == 2 and "Invalid value for '--eval-every'" in refused.output


@pytest.mark.parametrize("option", ["--episodes", "--threads"])
def test_eval_counts_below_one_are_refused(tmp_path, option):
    result = CliRunner().invoke(rl, ["eval", "--run", str(tmp_path), option, "0"])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("algorithm, default, locomotion", [
    ("bc", "none", "none"), ("td3bc", "auto", "none"), ("arq", "auto", "return_range"), ("dasco", "auto", "return_range"),
])
def test_reward_help_says_what_auto_does_for_this_algorithm(algorithm, default, locomotion):
    text = " ".join(CliRunner().invoke(rl, ["train", algorithm, "--help"]).output.split())
    assert f"Reward convention (default: {default})." in text
    assert f"minus_one (r-1) on maze datasets, {locomotion} on MuJoCo locomotion" in text
