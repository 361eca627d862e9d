"""Learning curves of runs: the evaluation score in each run's metrics.csv against steps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

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
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get(SCORE):
                steps.append(int(float(row["step"])))
                means.append(float(row[SCORE]))
                stds.append(float(row.get(SCORE_STD) or 0.0))
    return steps, means, stds


def plot_learning_curves(run_dirs: list[str | Path], out: str | Path, title: str = "") -> Path:
    """One line per run (label: algorithm, from config.json) with a +- std band; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for run_dir in run_dirs:
        steps, means, stds = read_curve(run_dir)
        config_path = Path(run_dir) / "config.json"
        label = json.loads(config_path.read_text())["algorithm"] if config_path.is_file() else Path(run_dir).name
        line, = axis.plot(steps, means, marker="o", label=label)
        axis.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                          color=line.get_color(), alpha=0.2)
    axis.set_xlabel("gradient steps")
    axis.set_ylabel("normalised score (mean ± std over episodes)")
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
