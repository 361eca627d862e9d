import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from behavior_models.cache import SampleCache, build_sample_cache
from behavior_models.data import load_transitions
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.io import load_npz, save_npz_atomic
from cli.bm import main as bm
from tests.helpers import assert_same_cache, write_flat_dataset

ROOT = Path(__file__).resolve().parents[2]
DATASET = "test/cli-cache-v0"
MARK = 0.25  # a candidate value no Gaussian draw repeats


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
    # --device cpu: compared with reference(), built on the CPU; the default (auto) would take a
    # GPU where there is one, whose random streams differ.
    return ["sample-cache", "--model", str(model_dir), "--dataset", DATASET, "--out", str(out), "--seed", "7",
            "--device", "cpu", "--no-progress", *extra]


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
    finished = sorted(work.glob("chunk-*.npz"))
    assert 5 <= len(finished) < 302 and not out.exists()
    # Mark the chunks the killed run finished (the work directory is gone once the rerun merges, so
    # their mtimes cannot be compared afterwards): a rerun that resumes merges them as they are, one
    # that redraws them overwrites the mark.
    rows = []
    for path in finished:
        start, stop = (int(part) for part in path.stem.split("-")[1:])
        chunk = load_npz(path)
        save_npz_atomic(path, **{**chunk, "candidates": np.full_like(chunk["candidates"], MARK)})
        rows.append((start, stop))

    rerun = subprocess.run(args, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    resumed = SampleCache.load(out)
    expected = reference(model_dir, tmp_path / "r.npz", batch_states=4, num_samples=50, seed=7)
    for start, stop in rows:
        assert (resumed.candidates[start:stop] == MARK).all(), f"finished chunk {start}-{stop} was redrawn"
        resumed.candidates[start:stop] = expected.candidates[start:stop]
    assert_same_cache(resumed, expected)  # and every chunk drawn after the kill equals the uninterrupted run's
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


@pytest.mark.parametrize("option, value", [("--num-samples", "0"), ("--batch-size", "0"), ("--chunk-states", "0"),
                                           ("--seed", "-1")])
def test_counts_below_one_are_option_errors(tmp_path, option, value):
    result = CliRunner().invoke(bm, command(tmp_path, tmp_path / "c.npz", option, value))
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def _one_line(text):
    return " ".join(text.split())


def test_summary_reports_support_from_the_written_cache(model_dir, tmp_path):
    out = tmp_path / "s.npz"
    result = CliRunner().invoke(bm, command(model_dir, out, "--num-samples", "4", "--threshold", "-2"))
    assert result.exit_code == 0, result.output
    cache = SampleCache.load(out)
    kept = float(cache.in_support.float().mean())
    empty = float((~cache.in_support.any(1)).float().mean())
    assert 0.0 < kept < 1.0  # a threshold that keeps some: the numbers below are not trivially 0% / 100%
    assert (f"wrote {out}: 1208 states x 4 candidates; {kept:.1%} of candidates in support, {empty:.1%} of states "
            "with none in support (threshold -2, absolute: user)") in result.stdout
    assert ("warning" in result.stderr) == (empty > 0.10)


def test_summary_warns_when_many_states_keep_nothing(model_dir, tmp_path):
    result = CliRunner().invoke(bm, command(model_dir, tmp_path / "w.npz", "--num-samples", "3", "--threshold", "50"))
    assert result.exit_code == 0, result.output
    assert "0.0% of candidates in support, 100.0% of states with none in support (threshold 50" in result.stdout
    warning = _one_line(result.stderr)
    assert "warning: 100.0% of states keep no candidate in support (more than 10%)" in warning
    for remedy in ("--threshold calibrated", "--likelihood none", "bm fit --steps"):
        assert remedy in warning, remedy

    kept_all = CliRunner().invoke(bm, command(model_dir, tmp_path / "n.npz", "--num-samples", "3", "--likelihood",
                                              "none"))
    assert kept_all.exit_code == 0, kept_all.output
    assert ("100.0% of candidates in support, 0.0% of states with none in support (--likelihood none: every "
            "candidate kept)") in kept_all.stdout and "warning" not in kept_all.stderr

    # A threshold would be silently ignored with no log-probs: refused before any dataset is loaded.
    ignored = CliRunner().invoke(bm, command(model_dir, tmp_path / "i.npz", "--likelihood", "none", "--threshold", "-2"))
    assert ignored.exit_code == 2 and "drop --threshold" in ignored.output and not (tmp_path / "i.npz").exists()


def test_the_resolved_sampler_is_printed_at_the_start(model_dir, tmp_path):
    result = CliRunner().invoke(bm, command(model_dir, tmp_path / "r.npz", "--num-samples", "2"))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("sample-cache: gaussian model, sampler the backend's only sampler; likelihood "
                                    "joint, 2 candidates per state, seed 7")


def test_a_score_model_names_its_slow_default_sampler(tmp_path):
    from cli.sample_cache import _resolved_sampler

    (tmp_path / "model.json").write_text('{"backend": "score"}')
    (tmp_path / "config.json").write_text('{"default_sampler": "pc", "pc_steps": 500}')
    backend, sampler = _resolved_sampler(str(tmp_path), {})
    assert backend == "score" and sampler.startswith("pc, the model's default (500 predictor-corrector steps")
    assert "--sampler fast" in sampler
    assert _resolved_sampler(str(tmp_path), {"steps": 50})[1].startswith("pc, the model's default (50 predictor")
    assert _resolved_sampler(str(tmp_path), {"sampler": "fast"}) == ("score", "fast")  # --sampler or --sampler-option


def test_sampler_help_shows_the_default_read_from_the_score_config():
    from behavior_models.score.model import ScoreConfig

    text = _one_line(CliRunner().invoke(bm, ["sample-cache", "--help"]).output)
    assert f"[default: the model's own sampler; score: {ScoreConfig().default_sampler}]" in text
    assert "use fast for caches" in text


def test_chunk_states_not_a_multiple_names_the_cli_options(model_dir, tmp_path):
    result = CliRunner().invoke(bm, command(model_dir, tmp_path / "c.npz", "--batch-size", "64", "--chunk-states", "100"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("Invalid value for --chunk-states: 100 is not a multiple of --batch-size (64); use e.g. "
            "--chunk-states 128") in _one_line(result.output)
    assert "batch_states" not in result.output and not (tmp_path / "c.npz.work").exists()
