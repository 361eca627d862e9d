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


def test_a_restarted_loop_hides_the_interrupted_loops_events_whatever_the_file_names(tmp_path):
    """TensorBoard reads event files in name order, and purge_step only hides the events of an
    interrupted loop read before it. A loop restarted in the same second named its file after
    the old one's only by host, pid and counter, as text: counter 10 sorted before 9."""
    pytest.importorskip("tensorboard")
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    old = tmp_path / "old"
    writer = SummaryWriter(str(old))  # the interrupted loop: steps 1-3, no checkpoint
    for step in (1, 2, 3):
        writer.add_scalar("loss", 10.0 + step, step)
    writer.close()
    (made,) = old.glob("events.out.tfevents.*")
    second = int(made.name.split(".")[3])
    # Named as a file of this second whose host, pid and counter sort after the new writer's.
    (tmp_path / "tb").mkdir()
    made.rename(tmp_path / "tb" / f"events.out.tfevents.{second}.zzzz.1.9")
    log = metrics.TensorBoardLog.open(tmp_path / "tb", start_step=0)
    for step in (1, 2):
        log.record(step, {"loss": float(step)})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 2.0)]
    names = sorted(path.name for path in (tmp_path / "tb").iterdir())
    assert names[-1] != f"events.out.tfevents.{second}.zzzz.1.9" and time.time() >= second + 1
