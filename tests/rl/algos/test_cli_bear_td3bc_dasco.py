"""`rl train bear|bear++|td3bc|td3bc++|dasco`: the ++ flags reach the config, the presets turn
both options on, and a BEAR/DASCO run resumes to the same weights as an uninterrupted one."""

import json

from click.testing import CliRunner

from cli.rl import main as rl_main

FAST = ["--steps", "20", "--eval-episodes", "1", "--eval-every", "0", "--checkpoint-every", "10", "--no-progress"]


def train(args, out):
    result = CliRunner().invoke(rl_main, ["train", *args, "--dataset", "test/mcar-v0", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("normalized_score: ")
    return json.loads((out / "config.json").read_text())["algo"]


def test_plus_plus_flags_and_presets(env_transitions, gaussian_dir, tmp_path):
    algo = train(["td3bc", "--gradient-penalty", "0.5", "--constraint-relaxation", "--set", "hidden=16,16"], tmp_path / "a")
    assert algo["gradient_penalty"] == 0.5 and algo["constraint_relaxation"] is True
    algo = train(["td3bc", "--set", "hidden=16,16"], tmp_path / "b")
    assert algo["gradient_penalty"] == 0.0 and algo["constraint_relaxation"] is False
    algo = train(["bear++", "--behavior", str(gaussian_dir), "--set", "hidden=16,16"], tmp_path / "c")
    assert algo["gradient_penalty"] == 1.0 and algo["constraint_relaxation"] is True
    assert algo["warmup_steps"] == 2  # min(40000, 0.1 * 20)
    # Explicit "off" values win over the preset: 0.0 is a value, not a missing option.
    algo = train(["td3bc++", "--gradient-penalty", "0", "--no-constraint-relaxation", "--set", "hidden=16,16"],
                 tmp_path / "e")
    assert algo["gradient_penalty"] == 0.0 and algo["constraint_relaxation"] is False


def test_resuming_with_another_budget_is_refused_where_schedules_depend_on_it(env_transitions, tmp_path):
    # DASCO's instance-noise anneal (like BEAR's warm start) is fixed by the step budget.
    extra = ["--set", "critic_hidden=16", "--set", "policy_hidden=16", "--set", "gan_hidden=16"]
    algo = train(["dasco", *extra], tmp_path / "d")
    assert algo["instance_noise_steps"] == 20 and algo["w"] == 1.0
    longer = [a if a != "20" else "40" for a in FAST]
    result = CliRunner().invoke(rl_main, ["train", "dasco", *extra, "--dataset", "test/mcar-v0", *longer,
                                          "--out", str(tmp_path / "d"), "--resume"])
    assert result.exit_code != 0 and "differ" in result.output
