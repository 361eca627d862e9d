import subprocess
import sys
import time

from click.testing import CliRunner

from cli.bm import main as bm
from cli.rl import main as rl
from tests.helpers import write_flat_dataset


def test_help_and_version():
    runner = CliRunner()
    for group in (bm, rl):
        assert runner.invoke(group, ["--help"]).exit_code == 0
        assert "0.1.0" in runner.invoke(group, ["--version"]).output


def test_datasets_lists_local_datasets_and_aliases():
    write_flat_dataset("test/listed-v0")
    result = CliRunner().invoke(bm, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "test/listed-v0" in result.output and "kitchen-mixed" in result.output


def test_datasets_info_prints_summary():
    write_flat_dataset("test/info-v0", episode_lengths=(2, 3))
    result = CliRunner().invoke(bm, ["datasets", "info", "test/info-v0"])
    assert result.exit_code == 0, result.output
    assert "transitions" in result.output and "fingerprint" in result.output


def test_missing_dataset_exits_nonzero_fast_without_traceback():
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "cli.bm", "datasets", "info", "kitchen-mixed"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert time.perf_counter() - start < 5.0
    assert process.returncode != 0
    assert "minari download D4RL/kitchen/mixed-v2" in process.stderr
    assert "Traceback" not in process.stderr



def test_an_empty_minari_datasets_path_is_an_error_not_a_traceback(monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", "")
    for args in (["datasets"], ["datasets", "info", "kitchen-mixed"]):
        result = CliRunner().invoke(bm, args)
        assert result.exit_code == 1, result.output
        assert "MINARI_DATASETS_PATH is set but empty" in result.output

def test_datasets_make_refuses_counts_below_one():
    for option in ("--episodes", "--episode-steps", "--reference-episodes"):
        result = CliRunner().invoke(bm, ["datasets", "make", "pointmaze-umaze-expert", option, "0"])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, option
