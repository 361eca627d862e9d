"""Learning-curve plots: read metrics.csv cleanly, write the PNG atomically."""

import gc
import json
import warnings

import matplotlib.figure
import matplotlib.pyplot as plt
import pytest

from rl.core.plotting import SCORE, SCORE_STD, plot_learning_curves, read_curve


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
