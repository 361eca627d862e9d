"""One logging interface for both training loops (`bm fit`, `rl train`), d3rlpy-style.

:class:`MetricsLogger` takes rows of scalars by step and hands each to its adapters: the CSV
(:class:`MetricsLog`: ``curve.csv`` of a fit, ``metrics.csv`` of a run), which is always
there and whose text the checkpoints hold, and TensorBoard (:class:`TensorBoardLog`, events
under ``tb/``) when it is installed.

The CSV: rewriting the whole file at every log step would cost O(rows) each time, O(rows²) over a
run: about a gigabyte of writes for a million steps logged every 250. Instead a row is
appended once it is complete, that is once a later step has been logged (the training
metrics and the evaluation of a step arrive separately). The file is rewritten whole only
when it must be: when a new column appears, when a written row changes, on resume (the
file may hold rows past the checkpoint being resumed) and when the run ends, so the final
text is the same however often the run was interrupted. The checkpoint, not this file, is
the log's durable copy: a crash mid-append can leave a partial last line, which the
rewrite on resume replaces.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Protocol

from behavior_models.errors import TrainingDivergedError
from behavior_models.io import write_text_atomic

TENSORBOARD_DIR = "tb"  # beside the CSV, in a fit's or a run's directory


class MetricsAdapter(Protocol):
    def record(self, step: int, values: dict[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MetricsLogger:
    """Rows of scalars by step, to the CSV at ``csv_path`` (None: kept in memory only) and, from
    :meth:`start` on, to TensorBoard in ``tensorboard_dir`` when TensorBoard is installed."""

    def __init__(self, csv_path: str | Path | None, tensorboard_dir: str | Path | None = None) -> None:
        self.csv = MetricsLog(csv_path)
        self.tensorboard_dir = tensorboard_dir
        self.adapters: list[MetricsAdapter] = [self.csv]

    def start(self, step: int) -> None:
        """Call once the loop knows the step it starts from (0, or a checkpoint's after ``csv.from_csv``)."""
        if self.tensorboard_dir is not None:
            tensorboard = TensorBoardLog.open(self.tensorboard_dir, step)
            if tensorboard is not None:
                self.adapters.append(tensorboard)

    def record(self, step: int, values: dict[str, float]) -> None:
        for adapter in self.adapters:
            adapter.record(step, values)

    def flush(self) -> None:
        """Called with each checkpoint: TensorBoard's events so far go to disk, so that an
        interruption loses none the resumed loop will not log again. (The CSV needs no flush:
        the checkpoint holds its text, and the file is rewritten from it on resume.)"""
        for adapter in self.adapters:
            adapter.flush()

    def close(self) -> None:
        """At the end of the loop: the CSV rewritten whole, TensorBoard's events flushed."""
        for adapter in self.adapters:
            adapter.close()


def refuse_non_finite(step: int, values: dict[str, float], saved_through: int | None, how_to_continue: str) -> None:
    """Stop a loop whose logged values (read back anyway, every log interval) are nan or inf: a
    diverged run would otherwise train on to its end and checkpoint its nan weights over the
    last good ones. ``saved_through`` is the newest checkpoint's step (None: nothing is saved)."""
    bad = [f"{key}={value}" for key, value in values.items() if not math.isfinite(value)]
    if bad:
        saved = "nothing was saved" if saved_through is None else f"the checkpoint of step {saved_through} is kept"
        raise TrainingDivergedError(f"training diverged: at step {step}, {', '.join(bad)}; {saved}. {how_to_continue}")


class TensorBoardLog:
    """The rows as TensorBoard scalars (one tag per column)."""

    def __init__(self, writer) -> None:
        self.writer = writer

    @classmethod
    def open(cls, directory: str | Path, start_step: int) -> "TensorBoardLog | None":
        """None when TensorBoard is not installed. Events past ``start_step`` (an interrupted
        loop's, past its checkpoint) are purged; those of ``start_step`` itself were logged
        before its checkpoint was saved, are not logged again, and stay."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        wait_for_a_later_second_than_the_event_files_in(Path(directory))
        return cls(SummaryWriter(str(directory), purge_step=start_step + 1))

    def record(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def wait_for_a_later_second_than_the_event_files_in(directory: Path) -> None:
    """Return once the clock's second is past that of every event file in ``directory``.

    TensorBoard reads a directory's event files in name order. A name is
    ``events.out.tfevents.<second>.<host>.<pid>.<counter>``, compared as text, so two files
    made in the same second are read in host, pid and counter order, and counter 10 comes
    before 9. ``purge_step`` drops an interrupted loop's events only if its file is read
    before the resumed loop's, so the new file must be named in a later second. This waits
    (under a second) only when a loop restarts within a second of the last start, as tests do;
    files stamped later still (another machine's clock) are not waited for."""
    seconds = [int(part) for path in directory.glob("events.out.tfevents.*")
               if (part := path.name.split(".")[3]).isdigit()]
    later = max(seconds, default=0) + 1
    while 0 < later - time.time() <= 1:
        time.sleep(0.01)


class MetricsLog:
    """``record(step, values)`` in increasing step order; ``to_csv()`` / ``from_csv()`` for checkpoints."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self.rows: dict[int, dict[str, float]] = {}
        self._columns: list[str] = []  # the header of the file on disk
        self._written_through = -1  # the last step whose row is in the file
        self._last_step = -1

    def record(self, step: int, values: dict[str, float]) -> None:
        if step > self._last_step:  # every row so far is complete: write the one still pending
            self._write_pending_row()
            self._last_step = step
        elif step <= self._written_through:  # a row already on disk changed
            self._written_through = -1
        self.rows.setdefault(step, {"step": step}).update(values)

    def columns(self) -> list[str]:
        return ["step"] + sorted({key for row in self.rows.values() for key in row} - {"step"})

    def to_csv(self) -> str:
        if not self.rows:
            return ""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns())
        writer.writeheader()
        writer.writerows(self.rows[step] for step in sorted(self.rows))
        return buffer.getvalue()

    def from_csv(self, text: str) -> None:
        """Replace the rows with those of ``text`` (a checkpoint's log) and rewrite the file."""
        self.rows = {}
        for row in csv.DictReader(io.StringIO(text)):
            step = int(row["step"])
            self.rows[step] = {k: float(v) for k, v in row.items() if v not in ("", None)} | {"step": step}
        self._last_step = max(self.rows, default=-1)
        self.rewrite()

    def flush(self) -> None:
        pass  # the checkpoint holds the text, and the file is rewritten from it on resume

    def close(self) -> None:
        self.rewrite()  # the same text however often the loop was interrupted

    def rewrite(self) -> None:
        """Write every row, atomically (temp file + rename)."""
        if self.path is not None:
            write_text_atomic(self.path, self.to_csv())
        self._columns = self.columns() if self.rows else []
        self._written_through = max(self.rows, default=-1)

    def _write_pending_row(self) -> None:
        """Steps arrive in increasing order, so at most one row (the last step's) is pending."""
        step = self._last_step
        if step < 0 or step <= self._written_through:
            return
        row = self.rows[step]
        if self.path is None:
            self._written_through = step
            return
        if self._written_through < 0 or not set(row) <= set(self._columns) or not self.path.exists():
            self.rewrite()  # nothing valid on disk yet, a changed row, or a new column
            return
        with self.path.open("a", newline="") as file:
            csv.DictWriter(file, fieldnames=self._columns).writerow(row)
        self._written_through = step
