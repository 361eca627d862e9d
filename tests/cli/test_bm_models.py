"""`bm fit`, `bm eval` and `bm plot` end to end on tiny datasets (seconds, not accuracy)."""

import json

import pytest
import torch
from click.testing import CliRunner

from behavior_models.data import load_transitions
from cli.bm import main as bm
from tests.helpers import write_conditional_gaussian_dataset, write_flat_dataset

TINY = ["--steps", "40", "--batch-size", "32"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(tmp_path, backend, dataset, *extra):
    out = tmp_path / backend
    result = CliRunner().invoke(bm, ["fit", "--model", backend, "--dataset", dataset, "--out", str(out), *TINY, *extra])
    assert result.exit_code == 0, result.output
    return out


def test_fit_writes_the_run_and_refuses_to_overwrite(tmp_path):
    write_conditional_gaussian_dataset("test/cli-gauss-v0", episodes=10, steps=30)
    config = tmp_path / "gan.json"
    config.write_text(json.dumps({"hidden": [16], "instance_noise_schedule": "cosine"}))
    torch.set_num_threads(2)
    out = _fit(tmp_path, "gan", "test/cli-gauss-v0", "--config", str(config), "--lr", "0.002", "--seed", "3",
               "--threads", "1")
    assert torch.get_num_threads() == 1  # --threads was applied (tests/conftest.py restores it afterwards)
    for name in ("weights.pt", "config.json", "model.json", "curve.csv", "checkpoint.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden"] == [16] and saved["instance_noise_schedule"] == "cosine"
    assert saved["lr"] == 0.002 and saved["seed"] == 3 and saved["steps"] == 40  # options override the file
    assert json.loads((out / "model.json").read_text())["support_threshold"] is not None
    assert (out / "curve.csv").read_text().startswith("step,d_loss,g_loss")

    report = json.loads(CliRunner().invoke(bm, ["eval", "--model", str(out), "--dataset", "test/cli-gauss-v0",
                                                "--json", "--max-points", "50"]).output)
    assert "log_prob_mean[default]" in report and not any(key.startswith("nll") for key in report)  # no NLL

    again = CliRunner().invoke(bm, ["fit", "--model", "gan", "--dataset", "test/cli-gauss-v0", "--out", str(out), *TINY])
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    forced = CliRunner().invoke(bm, ["fit", "--model", "gan", "--dataset", "test/cli-gauss-v0", "--out", str(out),
                                     "--force", *TINY, "--config", str(config)])
    assert forced.exit_code == 0, forced.output


def test_fit_refuses_unknown_config_fields_clearly(tmp_path):
    write_conditional_gaussian_dataset("test/cli-bad-v0", episodes=4, steps=10)
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"hiden": [8]}))
    result = CliRunner().invoke(bm, ["fit", "--model", "cvae", "--dataset", "test/cli-bad-v0", "--out",
                                     str(tmp_path / "x"), "--config", str(config)])
    assert result.exit_code == 1 and "unknown field(s) ['hiden']" in result.output and "Traceback" not in result.output


def test_fit_refuses_an_unusable_out_or_config_before_any_work(tmp_path):
    write_conditional_gaussian_dataset("test/cli-paths-v0", episodes=4, steps=10)
    (tmp_path / "file").write_text("")
    (tmp_path / "binary.json").write_bytes(bytes(range(128, 256)))
    for extra, message in [(["--out", str(tmp_path / "file" / "sub")], "is a file, not a directory"),
                           (["--out", str(tmp_path / "x"), "--config", str(tmp_path / "binary.json")],
                            "cannot read the config file")]:
        result = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/cli-paths-v0", *extra, *TINY])
        assert isinstance(result.exception, SystemExit) and result.exit_code != 0, result.output  # no traceback
        assert message in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_fit_refuses_an_existing_model_before_looking_for_the_dataset(tmp_path):
    """A recipe would be built first (minutes) only to be refused: the --out check comes first."""
    write_conditional_gaussian_dataset("test/cli-first-v0", episodes=4, steps=10)
    out = _fit(tmp_path, "gaussian", "test/cli-first-v0")
    result = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/absent-v0", "--out", str(out), *TINY])
    assert result.exit_code == 1 and "already holds a fitted model" in result.output, result.output


def test_eval_reports_on_the_held_out_episodes_of_the_fit(tmp_path):
    write_conditional_gaussian_dataset("test/cli-eval-v0", episodes=20, steps=30)
    config = tmp_path / "cvae.json"
    config.write_text(json.dumps({"hidden": [16, 16], "eval_samples": 8, "holdout_fraction": 0.2}))
    out = _fit(tmp_path, "cvae", "test/cli-eval-v0", "--config", str(config), "--seed", "5")
    result = CliRunner().invoke(bm, ["eval", "--model", str(out), "--dataset", "test/cli-eval-v0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    data = load_transitions("test/cli-eval-v0")
    _, held_out = data.split_episodes(0.2, seed=5)  # what the fit loop held out
    assert report["split"] == "held-out episodes of the fit" and report["points"] == len(held_out) == 120
    assert report["nll[iw]"] <= report["nll[elbo]"]  # the IW estimate is above the ELBO (means over 120 points)
    assert 0.9 <= report["support_rate_data"] <= 1.0
    # The data's actions lie within sigma <= 0.14 of a mean (tests/helpers.py), a sliver of the box
    # [-1, 1]^3, so a mask that separates the support rejects most uniform actions. This 40-step fit
    # accepts 16 of 120 (0.13; fit seeds 1-3 give 0.21-0.32); one that accepts everything gives 1.0.
    assert report["support_rate_uniform"] <= 0.5
    assert len(report["samples"]["mean"]) == 3 and report["capabilities"]["log_prob_kind"] == "estimate"
    text = CliRunner().invoke(bm, ["eval", "--model", str(out), "--dataset", "test/cli-eval-v0"])
    assert text.exit_code == 0 and "support_rate_uniform" in text.output


def test_eval_on_another_dataset_uses_all_of_it(tmp_path):
    write_conditional_gaussian_dataset("test/cli-a-v0", episodes=10, steps=20)
    write_conditional_gaussian_dataset("test/cli-b-v0", episodes=5, steps=20, seed=1)
    out = _fit(tmp_path, "gaussian", "test/cli-a-v0")
    result = CliRunner().invoke(bm, ["eval", "--model", str(out), "--dataset", "test/cli-b-v0", "--json"])
    report = json.loads(result.output)
    assert report["points"] == 100 and report["split"].startswith("whole dataset")


def test_eval_of_a_fit_without_held_out_episodes_says_it_reports_on_training_data(tmp_path):
    # The split used to read "whole dataset (the model was fitted on test/cli-nohold-v0)", as for another dataset.
    write_conditional_gaussian_dataset("test/cli-nohold-v0", episodes=5, steps=20)
    config = tmp_path / "nohold.json"
    config.write_text(json.dumps({"holdout_fraction": 0.0}))
    out = _fit(tmp_path, "gaussian", "test/cli-nohold-v0", "--config", str(config))
    result = CliRunner().invoke(bm, ["eval", "--model", str(out), "--dataset", "test/cli-nohold-v0", "--json"])
    assert json.loads(result.output)["split"].startswith("whole dataset: the training data")
    # No threshold either: null, not the NaN that json.dumps writes and strict JSON parsers refuse.
    report = json.loads(result.output, parse_constant=lambda name: pytest.fail(f"{name} in the --json output"))
    assert report["support_threshold"] is None and "support_rate_data" not in report


def test_eval_and_plot_refuse_a_dataset_of_other_dimensions_naming_both(tmp_path):
    # Used to fail inside log_prob with "obs must have shape [B, 2], got [120, 4]", naming no dataset.
    write_conditional_gaussian_dataset("test/cli-dims-v0", episodes=5, steps=20)
    write_flat_dataset("test/cli-other-dims-v0", episode_lengths=[30] * 4, obs_dim=4, act_dim=2)
    out = _fit(tmp_path, "gaussian", "test/cli-dims-v0")
    for command in (["eval"], ["plot", "--out", str(tmp_path / "p.png")]):
        result = CliRunner().invoke(bm, [*command, "--model", str(out), "--dataset", "test/cli-other-dims-v0"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert ("dataset test/cli-other-dims-v0 has 4-dim observations and 2-dim actions, but this gaussian model "
                "was fitted on test/cli-dims-v0 with 2 and 3") in result.output


def test_plot_draws_a_heat_map_for_1d_actions_and_marginals_otherwise(tmp_path):
    write_flat_dataset("test/cli-1d-v0", episode_lengths=[40] * 5, obs_dim=2, act_dim=1)
    write_conditional_gaussian_dataset("test/cli-3d-v0", episodes=10, steps=30)
    for dataset, backend in (("test/cli-1d-v0", "flow"), ("test/cli-3d-v0", "gaussian"), ("test/cli-1d-v0", "gan")):
        out = _fit(tmp_path / dataset.split("/")[1], backend, dataset)
        png = tmp_path / f"{backend}-{dataset.split('/')[1]}.png"
        result = CliRunner().invoke(bm, ["plot", "--model", str(out), "--dataset", dataset, "--out", str(png),
                                         "--resolution", "30", "--states", "2"])
        assert result.exit_code == 0, result.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        record = json.loads(png.with_name(png.name + ".json").read_text())  # what the figure shows
        assert record["command"] == "bm plot" and record["model_dir"] == str(out.resolve())
        assert record["dataset_id"] == dataset and (record["resolution"], record["states"]) == (30, 2)
    one_dim = CliRunner().invoke(bm, ["plot", "--model", str(tmp_path / "cli-3d-v0" / "gaussian"), "--dataset", "test/cli-3d-v0",
                                      "--out", str(tmp_path / "one.png"), "--dims", "2"])
    assert one_dim.exit_code == 2 and "give at least two" in one_dim.output  # not a silent plot of dims 0 and 1


def test_help_explains_every_command():
    for command in ("fit", "eval", "plot"):
        result = CliRunner().invoke(bm, [command, "--help"])
        assert result.exit_code == 0 and "--dataset" in result.output
    assert "score" in CliRunner().invoke(bm, ["fit", "--help"]).output  # every registered backend is offered


@pytest.mark.parametrize("payload, message", [
    ({"steps": "many"}, "GaussianConfig.steps takes an integer, got 'many'"),
    ({"normalize_states": "False?"}, "GaussianConfig.normalize_states takes a boolean (true/false/1/0), got 'False?'"),
    ({"batch_size": 0}, "GaussianConfig.batch_size must be at least 1, got 0"),
])
def test_fit_refuses_config_values_of_the_wrong_type_or_range(tmp_path, payload, message):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(payload))
    result = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/absent-v0", "--out",
                                     str(tmp_path / "x"), "--config", str(config)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, option", [
    (["fit", "--model", "gaussian", "--out", "x", "--steps", "0"], "--steps"),
    (["fit", "--model", "gaussian", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["eval", "--max-points", "0"], "--max-points"),
    (["eval", "--samples", "0"], "--samples"),
    (["plot", "--out", "p.png", "--states", "0"], "--states"),
    (["plot", "--out", "p.png", "--resolution", "1"], "--resolution"),
    (["plot", "--out", "p.png", "--state-dim", "-1"], "--state-dim"),
    (["eval", "--seed", "-1"], "--seed"),  # numpy refuses it: used to end in a ValueError traceback
    (["plot", "--out", "p.png", "--seed", "-1"], "--seed"),
])
def test_counts_out_of_range_are_option_errors(tmp_path, args, option):
    if args[0] != "fit":
        args = [*args, "--model", str(tmp_path)]
    result = CliRunner().invoke(bm, [*args, "--dataset", "test/absent-v0"])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def test_fit_help_shows_each_backends_defaults_read_from_its_config():
    from behavior_models.registry import BACKENDS, backend_class

    text = " ".join(CliRunner().invoke(bm, ["fit", "--help"]).output.split())
    steps = ", ".join(f"{name} {backend_class(name).config_class().steps:,}" for name in sorted(BACKENDS))
    assert f"[default: per backend: {steps}; x>=1]" in text
    assert "score 300,000" in text  # the costly one the review found hidden
    seeds = {backend_class(name).config_class().seed for name in BACKENDS}
    assert seeds == {0} and "Seed of the fit and of the held-out split (overrides --config). [default: 0]" in text


def test_fit_prints_the_resolved_settings_first(tmp_path):
    write_conditional_gaussian_dataset("test/cli-start-v0", episodes=4, steps=10)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"steps": 7, "lr": 0.01}))
    result = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/cli-start-v0", "--out",
                                     str(tmp_path / "g"), "--config", str(config), "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"bm fit gaussian: 7 steps, batch size 256, lr 0.01, seed 4 -> {tmp_path / 'g'}")


def test_fit_refuses_resume_with_force_before_any_work(tmp_path):
    result = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/absent-v0", "--out",
                                     str(tmp_path / "x"), "--resume", "--force"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: --resume continues the fit in --out and --force deletes it; pass one of them, not both." in result.output
    assert "test/absent-v0" not in result.output and not (tmp_path / "x").exists()


def test_fit_resume_without_steps_continues_to_the_recorded_budget(tmp_path):
    """--resume used to take the backend's default budget (the Gaussian's 20,000) when --steps was
    not repeated, so resuming a finished 40-step fit trained it 19,960 steps more."""
    write_conditional_gaussian_dataset("test/cli-budget-v0", episodes=10, steps=30)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"hidden": [8]}))
    out = _fit(tmp_path, "gaussian", "test/cli-budget-v0", "--config", str(config))
    curve = (out / "curve.csv").read_text()
    resumed = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/cli-budget-v0", "--out", str(out),
                                      "--batch-size", "32", "--config", str(config), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "bm fit gaussian: 40 steps" in resumed.output
    assert json.loads((out / "config.json").read_text())["steps"] == 40
    assert (out / "curve.csv").read_text() == curve  # nothing trained: the fit had reached its budget

    # A budget in --config still takes precedence over the recorded one.
    config.write_text(json.dumps({"hidden": [8], "steps": 50}))
    extended = CliRunner().invoke(bm, ["fit", "--model", "gaussian", "--dataset", "test/cli-budget-v0", "--out", str(out),
                                       "--batch-size", "32", "--config", str(config), "--resume"])
    assert extended.exit_code == 0, extended.output
    assert "bm fit gaussian: 50 steps" in extended.output
    assert json.loads((out / "config.json").read_text())["steps"] == 50
