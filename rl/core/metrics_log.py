"""A run's metrics: rows of scalars by step, kept in memory and mirrored to ``metrics.csv``.

Rewriting the whole file at every log step would cost O(rows) each time, O(rows²) over a
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
from pathlib import Path

from behavior_models.io import write_text_atomic


class MetricsLog:
    """``record(step, values)`` in increasing step order; ``to_csv()`` / ``from_csv()`` for checkpoints."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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

    def rewrite(self) -> None:
        """Write every row, atomically (temp file + rename)."""
        write_text_atomic(self.path, self.to_csv())
        self._columns = self.columns() if self.rows else []
        self._written_through = max(self.rows, default=-1)

    def _write_pending_row(self) -> None:
        """Steps arrive in increasing order, so at most one row (the last step's) is pending."""
        step = self._last_step
        if step < 0 or step <= self._written_through:
            return
        row = self.rows[step]
        if self._written_through < 0 or not set(row) <= set(self._columns) or not self.path.exists():
            self.rewrite()  # nothing valid on disk yet, a changed row, or a new column
            return
        with self.path.open("a", newline="") as file:
            csv.DictWriter(file, fieldnames=self._columns).writerow(row)
        self._written_through = step
