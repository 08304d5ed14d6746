"""The sweep report's pictures, drawn with matplotlib's object API (no pyplot: no global
state, no display needed). Replicates are one configuration: a line is its mean over seeds,
with a band or error bars over them.

- `sweep_report.png`: test accuracy, the final model's gap and test loss against epochs, a
  line per batch size, error bars the 95% interval over seeds;
- `sweep_val_loss.png`: each configuration's mean validation loss per epoch, a band over its
  seeds (their lowest to highest), the onset of the mean curve marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.analysis import overfitting, stats
from pipeline.sweep import findings
from pipeline.tracking import names


def _mean_and_error(values: pd.Series) -> tuple[float, float]:
    """The mean and the half-width of its 95% interval (0 with one seed)."""
    found = stats.spread(values.astype(float).tolist())
    return found.mean, 0.0 if found.high is None else found.high - found.mean


def summary(rows: pd.DataFrame, path: Path) -> None:
    """Test accuracy, the final model's gap and test loss against epochs, a line per batch
    size: the mean over seeds, error bars its 95% interval."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4), layout="constrained")
    panels = zip(
        figure.subplots(1, 3),
        (
            (names.TEST_ACCURACY, 100, "Test accuracy", "%"),
            (
                findings.FINAL_GAP,
                100,
                "Overfitting gap (the final model's train - test)",
                "points",
            ),
            (names.TEST_LOSS, 1, "Test loss", "cross-entropy"),
        ),
        strict=True,
    )
    done = rows[rows["status"] == "FINISHED"]
    for axes, (metric, scale, title, unit) in panels:
        for batch, group in done.groupby("batch_size"):
            epochs, means, errors = [], [], []
            for epoch, at in group.groupby("epochs"):
                mean, error = _mean_and_error(at[metric])
                epochs.append(epoch)
                means.append(scale * mean)
                errors.append(scale * error)
            axes.errorbar(epochs, means, yerr=errors, fmt="o-", capsize=3, label=f"batch {batch}")
        axes.set(title=title, xlabel="epochs", ylabel=unit)
        axes.set_xticks(sorted(done["epochs"].dropna().unique()))
        axes.grid(alpha=0.3)
        if done["batch_size"].notna().any():
            axes.legend()
    figure.savefig(path, dpi=110)


def _curves(losses: dict[str, list[float]], run_ids: pd.Series) -> np.ndarray:
    """The runs' validation loss per epoch as rows, NaN past a run's end (early stopping)."""
    found = [losses[str(run_id)] for run_id in run_ids]
    curves = np.full((len(found), max(map(len, found))), np.nan)
    for row, curve in zip(curves, found, strict=True):
        row[: len(curve)] = curve
    return curves


def validation_curves(
    rows: pd.DataFrame, by: list[str], losses: dict[str, list[float]], path: Path
) -> None:
    """Each configuration's mean validation loss per epoch over its seeds, a band from their
    lowest to their highest, the onset of the mean curve marked (x)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    done = rows[rows["run_id"].isin(losses)]
    # A shorter job of the same seed is the start of a longer one: the longest of each
    # configuration but the epochs has seen the most of the curve.
    for values, group in findings.groups(done, [k for k in by if k != "epochs"]):
        curves = _curves(losses, group.loc[group["epochs"] == group["epochs"].max(), "run_id"])
        epochs = np.arange(1, curves.shape[1] + 1)
        mean = np.nanmean(curves, axis=0)
        seeds = len(curves)
        name = findings.label(values) + (f" ({seeds} seeds)" if seeds > 1 else "")
        (line,) = axes.plot(epochs, mean, "-", label=name)
        if seeds > 1:
            low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
            axes.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
        onset = overfitting.onset(mean.tolist())
        if onset is not None:
            axes.plot(onset, mean[onset - 1], "x", color=line.get_color(), markersize=10)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="epoch", ylabel="cross-entropy")
    axes.set_title(
        "Validation loss per epoch: mean over seeds, band their range "
        "(x: where overfitting starts)",
        fontsize=10,
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110)
