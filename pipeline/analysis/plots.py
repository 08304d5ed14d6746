"""A run's pictures: learning curves with the overfitting gap, the confusion matrix, and the
test digits the model got wrong. Pure matplotlib (no pyplot, no display); the evaluate stage
saves them as PNGs for DVC (`dvc plots show`) and logs them in the run for the MLflow UI. The
same inputs give the same bytes: nothing dated is drawn or written in the PNG's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.analysis import stats
from pipeline.common import files
from pipeline.tracking import names

LEARNING_CURVES = "learning_curves.png"
CONFUSION = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
# Fixed margins, in fractions of the figure, fitted to these pictures' labels: matplotlib's
# constrained layout measured every text again at each save (a third of the drawing time).
CURVES_MARGINS = {"left": 0.06, "right": 0.99, "bottom": 0.12, "top": 0.92, "wspace": 0.18}
CONFUSION_MARGINS = {"left": 0.1, "right": 0.98, "bottom": 0.1, "top": 0.93}


@dataclass(frozen=True)
class Tested:
    """The test accuracy of the weights the run kept, its interval over the test digits, and
    the epoch those weights are from."""

    epoch: int
    accuracy: float
    interval: stats.Interval


def learning_curves(
    history: pd.DataFrame, located: dict | None = None, tested: Tested | None = None
) -> Figure:
    """Accuracy and loss per epoch, training against validation, the gap shaded; the best
    epoch by validation loss as a line, and the epochs from the onset of overfitting shaded
    (`located`: `evaluate.located`'s); the test accuracy with its interval at the kept epoch.
    Training is the model measured at each epoch's end where the run did (`train_sample_*`),
    beside Keras' running mean over the epoch."""
    figure = Figure(figsize=(11, 4))
    accuracy, loss = figure.subplots(1, 2, gridspec_kw=CURVES_MARGINS)
    epochs = history["epoch"]
    train_accuracy = _train(accuracy, loss, history)
    if "val_accuracy" in history:
        accuracy.plot(epochs, 100 * history["val_accuracy"], "o-", label="validation")
        accuracy.fill_between(
            epochs,
            100 * train_accuracy,
            100 * history["val_accuracy"],
            alpha=0.2,
            label="gap (overfitting)",
        )
        final = history.iloc[-1]
        accuracy.annotate(
            f"gap {100 * final['train_val_gap']:+.2f} points",
            (final["epoch"], 100 * final["val_accuracy"]),
            xytext=(-10, -25),
            textcoords="offset points",
            ha="right",
        )
        loss.plot(epochs, history["val_loss"], "o-", label="validation")
        _mark(loss, located or {}, int(epochs.iloc[-1]))
    if tested is not None:
        _test(accuracy, tested)
    accuracy.set(title="Accuracy", xlabel="epoch", ylabel="%")
    loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    for axes in (accuracy, loss):
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def _train(accuracy: Axes, loss: Axes, history: pd.DataFrame) -> pd.Series:
    """The training curves: the model at each epoch's end where measured, Keras' running mean
    beside it (or alone); return the training accuracy drawn."""
    epochs = history["epoch"]
    sampled = "train_sample_accuracy" in history
    train_accuracy = history["train_sample_accuracy" if sampled else "accuracy"]
    accuracy.plot(epochs, 100 * train_accuracy, "o-", label="train")
    loss.plot(epochs, history["train_sample_loss" if sampled else "loss"], "o-", label="train")
    if sampled:
        for axes, key, scale in ((accuracy, "accuracy", 100), (loss, "loss", 1)):
            axes.plot(epochs, scale * history[key], ":", color="grey", label="train, running mean")
    return train_accuracy


def _test(axes: Axes, tested: Tested) -> None:
    """The test accuracy as a point, its interval as an error bar: how far another draw of
    as many test digits could move it."""
    # never below 0: matplotlib refuses a negative bar, and an interval at 0% or 100% can
    # miss its accuracy by a rounding
    below = max(0.0, 100 * (tested.accuracy - tested.interval.low))
    above = max(0.0, 100 * (tested.interval.high - tested.accuracy))
    axes.errorbar(
        [tested.epoch],
        [100 * tested.accuracy],
        yerr=[[below], [above]],
        fmt="D",
        color="black",
        capsize=4,
        label=f"test ({100 * tested.interval.level:.0f}% interval)",
    )


def _mark(axes: Axes, located: dict, last: int) -> None:
    """The best epoch by validation loss, and the epochs from the onset on, on `axes`."""
    if located.get(names.BEST_VAL_LOSS_EPOCH):
        best = located[names.BEST_VAL_LOSS_EPOCH]
        axes.axvline(best, color="green", ls="--", label=f"lowest validation loss (epoch {best})")
    if located.get(names.ONSET):
        onset = located[names.ONSET]
        axes.axvspan(
            onset - 0.5,
            last + 0.5,
            color="red",
            alpha=0.08,
            label=f"overfitting from epoch {onset}",
        )


def confusion(matrix: np.ndarray) -> Figure:
    """Counts of true (rows) against predicted (columns) digits; the diagonal is right."""
    figure = Figure(figsize=(6, 5.5))
    axes = figure.subplots(gridspec_kw=CONFUSION_MARGINS)
    axes.imshow(np.log1p(matrix), cmap="Blues")
    limit = np.log1p(matrix).max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if np.log1p(count) > limit else "black",
        )
    ticks = range(len(matrix))
    axes.set(
        xticks=ticks,
        yticks=ticks,
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion matrix ({matrix.trace()} of {matrix.sum()} right)",
    )
    return figure


def misclassified(
    images: np.ndarray, labels: np.ndarray, proba: np.ndarray, limit: int = 36
) -> Figure:
    """The first `limit` test digits the model got wrong, each captioned with its index, the
    truth and the model's answer and confidence. One mosaic image, not a grid of axes: a
    sixth of the time to draw."""
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)[:limit]
    columns, side, caption, gap = 6, 28, 13, 4  # in pixels of the digits
    rows = max(1, -(-len(wrong) // columns))
    width, height = side + gap, side + caption
    mosaic = np.full((rows * height, columns * width), np.nan)  # NaN shows as white
    figure, axes = _mosaic_axes(mosaic.shape, 1.6 * columns)
    figure.suptitle(
        f"{np.count_nonzero(predicted != labels)} of {len(labels)} test digits "
        f"misclassified; the first {len(wrong)}"
    )
    for position, index in enumerate(wrong):
        top, left = divmod(position, columns)
        top, left = top * height, left * width
        mosaic[top : top + side, left : left + side] = np.asarray(images[index]).reshape(
            side, side
        )
        axes.text(
            left + side / 2,
            top + side + 1,
            f"#{index}: true {labels[index]}\n"
            f"predicted {predicted[index]} ({100 * proba[index].max():.0f}%)",
            ha="center",
            va="top",
            fontsize=8,
        )
    colors = matplotlib.colormaps["gray"].with_extremes(bad="white")
    axes.imshow(mosaic, cmap=colors, vmin=0, vmax=1, interpolation="nearest")
    return figure


def _mosaic_axes(shape: tuple[int, ...], inches: float) -> tuple[Figure, Axes]:
    """Bare axes for a mosaic of `shape` pixels, `inches` wide, a title's room above it."""
    high = inches * shape[0] / shape[1] + 0.4
    figure = Figure(figsize=(inches, high))
    axes = figure.subplots(
        gridspec_kw={"left": 0.01, "right": 0.99, "bottom": 0.01, "top": 1 - 0.4 / high}
    )
    axes.set_axis_off()
    return figure, axes


def save_all(
    folder: Path,
    history: pd.DataFrame,
    matrix: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray,
    located: dict | None = None,
    tested: Tested | None = None,
) -> list[Path]:
    """Write the three PNGs into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        LEARNING_CURVES: learning_curves(history, located, tested),
        CONFUSION: confusion(matrix),
        MISCLASSIFIED: misclassified(images, labels, proba),
    }
    for name, figure in figures.items():
        with files.replacing(folder / name, suffix=".png") as tmp:
            figure.savefig(tmp, dpi=100)
    return [folder / name for name in figures]
