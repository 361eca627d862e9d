import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from behavior_models.cache import SampleCache, build_sample_cache
from behavior_models.data import load_transitions
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from cli.bm import main as bm
from tests.helpers import assert_same_cache, write_flat_dataset

ROOT = Path(__file__).resolve().parents[2]
DATASET = "test/cli-cache-v0"


@pytest.fixture()
def model_dir(tmp_path):
    write_flat_dataset(DATASET, episode_lengths=(150,) * 8, obs_dim=3, act_dim=2)  # 1208 states
    config = GaussianConfig(steps=20, batch_size=32, hidden=(16, 16), checkpoint_every=10_000)
    GaussianBehaviorModel.fit(load_transitions(DATASET), config, out_dir=tmp_path / "model", progress=False)
    return tmp_path / "model"


def reference(model_dir, out, **options):
    """The uninterrupted single-process result, built in-process."""
    return SampleCache.load(build_sample_cache(model_dir, load_transitions(DATASET), out, progress=False, **options))


def command(model_dir, out, *extra):
    return ["sample-cache", "--model", str(model_dir), "--dataset", DATASET, "--out", str(out), "--seed", "7",
            "--no-progress", *extra]


def test_cli_writes_a_cache_and_refuses_to_overwrite(model_dir, tmp_path):
    runner = CliRunner()
    args = command(model_dir, tmp_path / "c.npz", "--num-samples", "5", "--batch-size", "64", "--threshold", "-2")
    result = runner.invoke(bm, args)
    assert result.exit_code == 0, result.output
    cache = SampleCache.load(tmp_path / "c.npz")
    assert cache.candidates.shape == (1208, 5, 2) and cache.threshold == -2.0
    assert_same_cache(cache, reference(model_dir, tmp_path / "r.npz", num_samples=5, batch_states=64, seed=7,
                                       threshold=-2.0))
    again = runner.invoke(bm, args)
    assert again.exit_code != 0 and "already exists" in again.output and "Traceback" not in again.output
    # Checked before any dataset is built or loaded: a dataset that does not exist is not reached.
    early = runner.invoke(bm, [*args[:args.index("--dataset") + 1], "no-such-dataset", *args[args.index("--dataset") + 2:]])
    assert early.exit_code != 0 and "already exists" in early.output
    bad = runner.invoke(bm, command(model_dir, tmp_path / "d.npz", "--sampler-option", "oops"))
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output


def test_kill_9_then_rerun_equals_an_uninterrupted_run(model_dir, tmp_path):
    out = tmp_path / "k.npz"
    args = [sys.executable, "-m", "cli.bm", *command(model_dir, out, "--batch-size", "4", "--chunk-states", "4",
                                                      "--num-samples", "50")]
    process = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    work = tmp_path / "k.npz.work"
    deadline = time.monotonic() + 60
    while len(list(work.glob("chunk-*.npz"))) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    finished = {path.name: path.stat().st_mtime_ns for path in work.glob("chunk-*.npz")}
    assert 5 <= len(finished) < 302 and not out.exists()

    rerun = subprocess.run(args, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_cache(SampleCache.load(out), reference(model_dir, tmp_path / "r.npz", batch_states=4,
                                                        num_samples=50, seed=7))
    assert not work.exists()


def test_torchrun_with_two_processes_equals_one_process(model_dir, tmp_path):
    out = tmp_path / "two.npz"  # `python -m torch.distributed.run` is `torchrun`
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cli.bm",
            *command(model_dir, out, "--batch-size", "32", "--chunk-states", "96", "--threshold", "calibrated")]
    run = subprocess.run(args, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    two = SampleCache.load(out)
    assert two.metadata["world_size"] == 2
    one = reference(model_dir, tmp_path / "one.npz", batch_states=32, seed=7, threshold="calibrated")
    assert_same_cache(two, one)


@pytest.mark.parametrize("option", ["--num-samples", "--batch-size", "--chunk-states"])
def test_counts_below_one_are_option_errors(tmp_path, option):
    result = CliRunner().invoke(bm, command(tmp_path, tmp_path / "c.npz", option, "0"))
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
