"""Learning curves of runs: the evaluation score in each run's metrics.csv against steps."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Callable

from behavior_models.errors import ArtefactMismatchError
from behavior_models.io import atomic_path

SCORE = "eval/normalized_score_mean"
SCORE_STD = "eval/normalized_score_std"


def read_curve(run_dir: str | Path) -> tuple[list[int], list[float], list[float]]:
    """(steps, score means, score stds) of the evaluations logged in ``run_dir``/metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise ArtefactMismatchError(f"{run_dir} has no metrics.csv: is it a run directory made by `rl train`?")
    steps, means, stds = [], [], []
    text = path.read_text()
    # A run still training appends rows; one cut mid-append (read now, or left by a crash) ends
    # without its newline and may hold a truncated number: leave it out.
    complete = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
    for row in csv.DictReader(io.StringIO(complete, newline="")):
        if row.get(SCORE):
            steps.append(int(float(row["step"])))
            means.append(float(row[SCORE]))
            stds.append(float(row.get(SCORE_STD) or 0.0))
    return steps, means, stds


def _run_record(run_dir: str | Path) -> dict:
    """The run's config.json, or {} when it has none (a metrics.csv copied on its own)."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def no_evaluation_reason(run_dir: str | Path) -> str:
    """Why ``run_dir``'s metrics.csv holds no evaluation row, from the run settings it recorded."""
    run = _run_record(run_dir).get("run")
    if not isinstance(run, dict):
        return "trained with --eval-episodes 0 or --eval-every 0, or not evaluated yet"
    if not run.get("eval_episodes"):
        return "it was trained with --eval-episodes 0"
    if not run.get("eval_every"):
        return "it was trained with --eval-every 0, which evaluates only at the end, and has not finished"
    return f"it has not reached its first evaluation (step {run['eval_every']}) yet"


def score_axis_label(run_dirs: list[str | Path], warn: Callable[[str], None]) -> str:
    """The y-axis label, from the ``score_kind`` in each finished run's summary.json: on a dataset
    without reference scores the "normalized_score" columns hold raw returns. Runs of both kinds
    on one axis get a warning; unfinished runs (no summary yet) do not count."""
    kinds = {}
    for run_dir in run_dirs:
        try:
            kinds[run_dir] = json.loads((Path(run_dir) / "summary.json").read_text()).get("score_kind")
        except (OSError, ValueError):
            continue
    raw = [str(run_dir) for run_dir, kind in kinds.items() if kind == "raw_return"]
    if raw and any(kind == "normalized" for kind in kinds.values()):
        warn(f"{', '.join(raw)} score raw returns (no reference scores), the other runs normalised scores: "
             "one axis, two scales")
        return "normalised score or raw return (mean ± std over episodes)"
    if raw:
        return "return, not normalised: no reference scores (mean ± std over episodes)"
    return "normalised score (mean ± std over episodes)"


def curve_labels(run_dirs: list[str | Path]) -> list[str]:
    """Legend labels: the algorithm, and where an algorithm repeats, with the run directory's name
    (``bc (seed0)``); the path as given where even those names repeat."""
    algorithms = [_run_record(run_dir).get("algorithm") or Path(run_dir).resolve().name for run_dir in run_dirs]
    labels = [f"{algorithm} ({Path(run_dir).resolve().name})" if algorithms.count(algorithm) > 1 else algorithm
              for algorithm, run_dir in zip(algorithms, run_dirs)]
    return [f"{algorithm} ({run_dir})" if labels.count(label) > 1 else label
            for algorithm, run_dir, label in zip(algorithms, run_dirs, labels)]


def plot_learning_curves(run_dirs: list[str | Path], out: str | Path, title: str = "",
                         warn: Callable[[str], None] | None = None) -> Path:
    """One line per run with a +- std band; saved as PNG.

    Labels come from :func:`curve_labels`. A run without evaluation rows is left out with a
    warning (``warn``, default :func:`warnings.warn`) that says why; if no run has any, nothing is
    drawn and :class:`ArtefactMismatchError` says so.
    """
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    curves = [(run_dir, read_curve(run_dir)) for run_dir in run_dirs]
    empty = [run_dir for run_dir, (steps, _, _) in curves if not steps]
    if len(empty) == len(curves):
        reasons = "; ".join(f"{run_dir}: {no_evaluation_reason(run_dir)}" for run_dir in empty)
        raise ArtefactMismatchError(f"no evaluation rows in metrics.csv to plot ({reasons}); train with "
                                    "--eval-episodes N > 0 (and --eval-every for points along the way)")
    for run_dir in empty:
        warn(f"{run_dir} has no evaluation rows in metrics.csv ({no_evaluation_reason(run_dir)}); "
             "it is left out of the plot")
    plotted = [(run_dir, curve) for run_dir, curve in curves if curve[0]]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    labels = curve_labels([run_dir for run_dir, _ in plotted])
    for (_, (steps, means, stds)), label in zip(plotted, labels):
        line, = axis.plot(steps, means, marker="o", label=label)
        axis.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                          color=line.get_color(), alpha=0.2)
    axis.set_xlabel("gradient steps")
    axis.set_ylabel(score_axis_label([run_dir for run_dir, _ in plotted], warn))
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    out = Path(out)
    try:
        # Always PNG, as documented, whatever the name of out ends with.
        with atomic_path(out, suffix=".png") as tmp:
            figure.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(figure)
    return out
