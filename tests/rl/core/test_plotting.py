"""Learning-curve plots: read metrics.csv cleanly, write the PNG atomically."""

import gc
import json
import warnings

import matplotlib.figure
import matplotlib.pyplot as plt
import pytest

from behavior_models.errors import ArtefactMismatchError
from rl.core.plotting import SCORE, SCORE_STD, curve_labels, plot_learning_curves, read_curve


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "bc"
    run.mkdir()
    (run / "metrics.csv").write_text(f"step,train/loss,{SCORE},{SCORE_STD}\n"
                                     "10,0.5,,\n20,0.4,12.5,1.5\n30,0.3,20.0,2.0\n")
    (run / "config.json").write_text(json.dumps({"algorithm": "bc"}))
    return run


def test_read_curve_keeps_evaluation_rows_and_closes_the_file(run_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_curve(run_dir) == ([20, 30], [12.5, 20.0], [1.5, 2.0])
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]



def test_read_curve_leaves_out_a_row_cut_mid_append(run_dir):
    # A running (or crashed) run's last row may be half written: "40,0.2,2" of "40,0.2,25.0,2.5".
    with (run_dir / "metrics.csv").open("a") as file:
        file.write("40,0.2,2")
    assert read_curve(run_dir) == ([20, 30], [12.5, 20.0], [1.5, 2.0])

def test_plot_is_written_atomically(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "plots" / "curves.png"
    assert plot_learning_curves([run_dir], out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = out.read_bytes()

    def interrupted(self, fname, **kwargs):  # a savefig killed half-way through the file
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plot_learning_curves([run_dir], out)
    assert out.read_bytes() == before  # the previous plot is intact
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary left behind
    assert plt.get_fignums() == []  # the figure is closed even so


def make_run(path, algorithm="bc", evaluated=True, eval_episodes=10, eval_every=5000):
    path.mkdir(parents=True)
    rows = "10,0.5,,\n20,0.4,12.5,1.5\n" if evaluated else "10,0.5,,\n20,0.4,,\n"
    (path / "metrics.csv").write_text(f"step,train/loss,{SCORE},{SCORE_STD}\n{rows}")
    (path / "config.json").write_text(json.dumps({"algorithm": algorithm, "run": {"eval_episodes": eval_episodes,
                                                                                  "eval_every": eval_every}}))
    return path


@pytest.fixture
def legend(monkeypatch):
    """The legend texts of every figure saved, in order."""
    seen = []
    save = matplotlib.figure.Figure.savefig

    def recording(self, *args, **kwargs):
        seen.append([text.get_text() for text in self.axes[0].get_legend().get_texts()])
        return save(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return seen


def test_repeated_algorithms_are_told_apart_by_run_directory(tmp_path, legend):
    runs = [make_run(tmp_path / "seed0"), make_run(tmp_path / "seed1"), make_run(tmp_path / "t", algorithm="td3bc")]
    plot_learning_curves(runs, tmp_path / "p.png")
    assert legend == [["bc (seed0)", "bc (seed1)", "td3bc"]]
    same_names = [make_run(tmp_path / "a" / "seed0"), make_run(tmp_path / "b" / "seed0")]
    assert curve_labels(same_names) == [f"bc ({same_names[0]})", f"bc ({same_names[1]})"]
    assert curve_labels([runs[0], runs[2]]) == ["bc", "td3bc"]  # no suffix where nothing repeats


def test_a_run_without_evaluations_is_left_out_with_the_reason(tmp_path, legend):
    good = make_run(tmp_path / "good")
    silent = make_run(tmp_path / "silent", evaluated=False, eval_episodes=0)
    warned = []
    plot_learning_curves([good, silent], tmp_path / "p.png", warn=warned.append)
    assert legend == [["bc"]]
    assert warned == [f"{silent} has no evaluation rows in metrics.csv (it was trained with --eval-episodes 0); "
                      "it is left out of the plot"]
    with pytest.warns(UserWarning, match="left out of the plot"):  # the library default
        plot_learning_curves([good, silent], tmp_path / "p.png")


def test_no_run_with_evaluations_is_refused_and_nothing_written(tmp_path):
    end_only = make_run(tmp_path / "end", evaluated=False, eval_every=0)
    early = make_run(tmp_path / "early", evaluated=False, eval_every=5000)
    with pytest.raises(ArtefactMismatchError) as error:
        plot_learning_curves([end_only, early], tmp_path / "p.png")
    assert f"{end_only}: it was trained with --eval-every 0, which evaluates only at the end" in str(error.value)
    assert f"{early}: it has not reached its first evaluation (step 5000) yet" in str(error.value)
    assert not (tmp_path / "p.png").exists()


def test_rl_plot_warns_and_refuses_in_one_line(tmp_path):
    from click.testing import CliRunner

    from cli.rl import main as rl

    good, silent = make_run(tmp_path / "good"), make_run(tmp_path / "silent", evaluated=False, eval_episodes=0)
    result = CliRunner().invoke(rl, ["plot", "--run", str(good), "--run", str(silent), "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {silent} has no evaluation rows") and "wrote" in result.stdout
    record = json.loads((tmp_path / "p.png.json").read_text())  # what the figure shows
    assert record["command"] == "rl plot" and record["runs"] == [str(good.resolve()), str(silent.resolve())]
    refused = CliRunner().invoke(rl, ["plot", "--run", str(silent), "--out", str(tmp_path / "q.png")])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.output.startswith("Error: no evaluation rows in metrics.csv to plot")
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "q.png").exists()


@pytest.mark.parametrize("kinds, label, warned", [
    (["normalized", None], "normalised score (mean ± std over episodes)", False),
    (["raw_return"], "return, not normalised: no reference scores (mean ± std over episodes)", False),
    (["raw_return", "normalized"], "normalised score or raw return (mean ± std over episodes)", True),
])
def test_the_axis_says_raw_returns_where_the_runs_scored_them(tmp_path, monkeypatch, kinds, label, warned):
    """A dataset without reference scores logs raw returns under the normalized_score columns."""
    runs = []
    for i, kind in enumerate(kinds):
        run = make_run(tmp_path / f"seed{i}")
        if kind is not None:  # None: not finished, no summary.json yet
            (run / "summary.json").write_text(json.dumps({"score_kind": kind}))
        runs.append(run)
    labels, warnings_seen = [], []
    save = matplotlib.figure.Figure.savefig

    def recording(self, *args, **kwargs):
        labels.append(self.axes[0].get_ylabel())
        return save(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    plot_learning_curves(runs, tmp_path / "curves.png", warn=warnings_seen.append)
    assert labels == [label]
    assert bool(warnings_seen) == warned and all("one axis, two scales" in w for w in warnings_seen)
