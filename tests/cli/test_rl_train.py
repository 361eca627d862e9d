"""`rl train` / `rl eval` option checking: --set values typed by the config field, counts in range,
--reward's help read from each algorithm. None of these need a dataset: they fail (or pass) first."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from behavior_models.errors import ConfigError
from cli.rl import main as rl
from cli.rl_train import field_text, parse_override
from rl.algos import ALGORITHMS, algorithm_class
from rl.algos.arq import ARQConfig
from rl.algos.spot import SPOTConfig
from tests.helpers import write_flat_dataset


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


@pytest.mark.parametrize("option, value", [("--episodes", "0"), ("--threads", "0"), ("--seed", "-1")])
def test_eval_counts_below_one_are_refused(tmp_path, option, value):
    # A negative --seed had run, recorded as -1 while the episodes reset with 2^31 - 1.
    result = CliRunner().invoke(rl, ["eval", "--run", str(tmp_path), option, value])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def test_train_refuses_a_negative_seed_and_an_out_inside_a_file_before_any_work(tmp_path):
    result = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", "--seed", "-3"])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", "--out", str(tmp_path / "file" / "run")])
    assert result.exit_code == 2 and "is a file, not a directory" in result.output  # before the missing dataset


@pytest.mark.parametrize("algorithm, default, locomotion", [
    ("bc", "none", "none"), ("td3bc", "auto", "none"), ("arq", "auto", "return_range"), ("dasco", "auto", "return_range"),
])
def test_reward_help_says_what_auto_does_for_this_algorithm(algorithm, default, locomotion):
    text = " ".join(CliRunner().invoke(rl, ["train", algorithm, "--help"]).output.split())
    assert f"Reward convention (default: {default})." in text
    assert f"minus_one (r-1) on maze datasets, {locomotion} on MuJoCo locomotion" in text


def _help(algorithm):
    result = CliRunner().invoke(rl, ["train", algorithm, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_train_help_lists_the_config_fields_and_a_real_set_example(algorithm):
    config_cls = algorithm_class(algorithm).config_class
    text = _help(algorithm)
    example = text.split("e.g. --set ", 1)[1].split(";")[0]
    field, value = example.split("=")
    assert parse_override(config_cls, example) == (field, getattr(config_cls(), field))  # a real field, its default
    listed = text.split(f"Config fields of {config_cls.__name__} and their defaults", 1)[1].split("Options:")[0]
    for f in dataclasses.fields(config_cls):
        default = getattr(config_cls(), f.name)
        assert f"{f.name}={field_text(default)}" in listed, f.name
        assert parse_override(config_cls, f"{f.name}={field_text(default)}") == (f.name, default)  # reads back


def test_train_help_shows_only_the_options_an_algorithm_takes():
    for algorithm in ("bc", "td3bc", "dasco"):
        options = _help(algorithm).split("Options:")[1]
        assert "--behavior" not in options and "--variant" not in options, algorithm
    spot = _help("spot").split("Options:")[1]
    assert "--behavior PATH A behavior-model directory (from `bm fit`)" in spot
    assert "--behavior-model" not in spot and "--variant" not in spot
    arq = _help("arq").split("Options:")[1]
    assert "--behavior PATH A sample cache" in arq and "--behavior-model PATH" in arq
    assert "--variant [arq|arq-implicit|behavior|q-beta]" in arq


@pytest.mark.parametrize("algorithm, flag, reason", [
    ("bc", "--behavior", "bc trains without a behavior model; drop --behavior"),
    ("dasco", "--behavior", "dasco trains without a behavior model"),
    ("spot", "--behavior-model", "spot does not sample a behavior model at act time; drop --behavior-model "
                                 "(its model is --behavior)"),
    ("td3bc", "--behavior-model", "td3bc does not sample a behavior model at act time"),
])
def test_train_refuses_a_behavior_option_the_algorithm_does_not_take_saying_why(algorithm, flag, reason):
    refused = CliRunner().invoke(rl, ["train", algorithm, "--dataset", "test/absent-v0", flag, "x.npz"])
    assert refused.exit_code == 2 and f"{flag}: {reason}" in " ".join(refused.output.split())


def test_train_help_shows_the_gradient_penalty_default_of_each_algorithm():
    assert "every 5th step (0: off). [default: 0]" in _help("bear")
    assert "every 5th step (0: off). [default: 0]" in _help("td3bc")
    assert "every 5th step (0: off). [default: set from the dataset id]" in _help("bear++")
    assert "presets. [default: constraint-relaxation]" in _help("td3bc++")
    assert "Minibatch size (the config's batch_size). [default: 512; x>=1]" in _help("arq")


def test_train_refuses_resume_with_force_before_any_work(tmp_path):
    result = CliRunner().invoke(rl, ["train", "bc", "--dataset", "test/absent-v0", "--out", str(tmp_path / "r"),
                                     "--resume", "--force"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: --resume continues the run in --out and --force deletes it; pass one of them, not both." in result.output
    assert "test/absent-v0" not in result.output


@pytest.mark.usefixtures("one_torch_thread")
def test_resume_says_when_there_is_nothing_to_resume(tmp_path):
    write_flat_dataset("test/cli-resume-v0", episode_lengths=(20, 20))
    out = tmp_path / "seed0"
    args = ["train", "bc", "--dataset", "test/cli-resume-v0", "--out", str(out), "--eval-episodes", "0",
            "--set", "hidden=8", "--batch-size", "8", "--no-progress", "--resume"]
    first = CliRunner().invoke(rl, [*args, "--steps", "4"])
    assert first.exit_code == 0, first.output
    assert first.stderr.startswith(f"nothing to resume in {out}; starting a new run")
    more = CliRunner().invoke(rl, [*args, "--steps", "6"])
    assert more.exit_code == 0, more.output
    assert "nothing to resume" not in more.stderr and "from step 4" in more.stderr


@pytest.mark.usefixtures("one_torch_thread")
def test_resume_without_steps_continues_to_the_recorded_budget(tmp_path):
    """--steps used to default to 20,000 on --resume too: resuming a 6-step run without --steps
    extended it to 20,000 steps instead of continuing to the end it was started for."""
    write_flat_dataset("test/cli-budget-v0", episode_lengths=(20, 20))
    out = tmp_path / "seed0"
    args = ["train", "bc", "--dataset", "test/cli-budget-v0", "--out", str(out), "--eval-episodes", "0",
            "--set", "hidden=8", "--batch-size", "8", "--no-progress"]
    assert CliRunner().invoke(rl, [*args, "--steps", "6"]).exit_code == 0
    resumed = CliRunner().invoke(rl, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    assert json.loads((out / "config.json").read_text())["run"]["steps"] == 6
