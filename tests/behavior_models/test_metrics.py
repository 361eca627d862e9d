import csv

import pytest

import behavior_models.metrics as metrics
from behavior_models.metrics import MetricsLog


def file_rows(path):
    return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(path.open())]


def memory_rows(log, before=None):
    return [log.rows[s] for s in sorted(log.rows) if before is None or s < before]


@pytest.fixture
def rewrites(monkeypatch):
    calls = []
    real = metrics.write_text_atomic
    monkeypatch.setattr(metrics, "write_text_atomic", lambda path, text: (calls.append(path), real(path, text)))
    return calls


def test_file_holds_every_complete_row_and_appends_instead_of_rewriting(tmp_path, rewrites):
    log = MetricsLog(tmp_path / "metrics.csv")
    for step in range(10, 2010, 10):
        log.record(step, {"loss": 1.0 / step, "q": float(step)})
        if step % 500 == 0:  # an evaluation of the same step arrives separately, with new columns
            log.record(step, {"eval/score": step / 10})
        assert step == 10 or file_rows(log.path) == memory_rows(log, before=step)
    # Two whole writes for 200 rows: the first row, and the header growing at the first evaluation.
    assert len(rewrites) == 2
    log.rewrite()
    assert log.path.read_bytes() == log.to_csv().encode()
    assert file_rows(log.path)[49] == {"step": 500.0, "loss": 1 / 500, "q": 500.0, "eval/score": 50.0}


def test_a_written_row_that_changes_is_rewritten(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    log.record(1, {"loss": 1.0})
    log.rewrite()
    log.record(1, {"eval/score": 3.0})  # the final evaluation after the final checkpoint
    log.record(2, {"loss": 2.0})
    assert file_rows(log.path) == [{"step": 1.0, "loss": 1.0, "eval/score": 3.0}]


def test_resume_replaces_rows_past_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    for step in (1, 2, 3, 4):
        log.record(step, {"loss": float(step)})
    checkpoint_text = MetricsLog(tmp_path / "other.csv")
    checkpoint_text.record(1, {"loss": 1.0})
    checkpoint_text.record(2, {"loss": 2.0})
    resumed = MetricsLog(log.path)
    resumed.from_csv(checkpoint_text.to_csv())
    assert log.path.read_bytes() == checkpoint_text.to_csv().encode()
    resumed.record(3, {"loss": 30.0})
    resumed.record(4, {"loss": 40.0})
    assert file_rows(log.path) == [{"step": 1.0, "loss": 1.0}, {"step": 2.0, "loss": 2.0}, {"step": 3.0, "loss": 30.0}]
