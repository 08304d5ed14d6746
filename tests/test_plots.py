"""pipeline/analysis/plots.py: the pictures evaluate logs (learning curves, confusion matrix, the
misclassified digits), against hand-made cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate
from pipeline.analysis import plots, stats

HISTORY = pd.DataFrame(
    {
        "epoch": [1, 2],
        "accuracy": [0.9, 0.99],
        "loss": [0.3, 0.1],
        "val_accuracy": [0.92, 0.97],
        "val_loss": [0.25, 0.12],
        "train_val_gap": [-0.02, 0.02],
    }
)


def test_misclassified_shows_each_wrong_digit_with_truth_and_answer():
    images = np.repeat(np.arange(1, 6, dtype=np.float32)[:, None] / 10, 784, axis=1)
    labels = np.array([7, 2, 1, 0, 4])
    proba = np.full((5, 10), 0.01)
    proba[np.arange(5), [7, 3, 1, 6, 4]] = 0.91  # digits 1 and 3 are wrong
    figure = plots.misclassified(images, labels, proba)
    (axes,) = figure.axes
    assert [text.get_text() for text in axes.texts] == [
        "#1: true 2\npredicted 3 (91%)",
        "#3: true 0\npredicted 6 (91%)",
    ]
    mosaic = axes.images[0].get_array()
    tiles = [mosaic[:28, :28], mosaic[:28, 32:60]]  # first row: the wrong digits, in order
    assert [float(tile.min()) for tile in tiles] == [float(images[1, 0]), float(images[3, 0])]
    assert [float(tile.max()) for tile in tiles] == [float(images[1, 0]), float(images[3, 0])]
    assert "2 of 5 test digits misclassified" in figure.get_suptitle()


def test_learning_curves_mark_the_final_gap():
    accuracy, loss = plots.learning_curves(HISTORY).axes
    assert [t.get_text() for t in accuracy.texts] == ["gap +2.00 points"]
    assert [line.get_label() for line in loss.lines] == ["train", "validation"]


def test_learning_curves_mark_the_best_epoch_and_shade_from_the_onset():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "accuracy": [0.9, 0.95, 0.97, 0.98],
            "loss": [0.3, 0.15, 0.1, 0.07],
            "train_sample_accuracy": [0.94, 0.97, 0.98, 0.99],
            "train_sample_loss": [0.2, 0.1, 0.07, 0.05],
            "val_accuracy": [0.93, 0.96, 0.96, 0.955],
            "val_loss": [0.25, 0.12, 0.13, 0.15],
            "train_val_gap": [0.01, 0.01, 0.02, 0.035],
        }
    )
    where = {"best_val_loss_epoch": 2, "overfitting_onset_epoch": 3}
    accuracy, loss = plots.learning_curves(history, where).axes
    assert [line.get_label() for line in loss.lines] == [
        "train",
        "train, running mean",
        "validation",
        "lowest validation loss (epoch 2)",
    ]
    assert list(loss.lines[-1].get_xdata()) == [2, 2]
    (shaded,) = [p for p in loss.patches if p.get_label() == "overfitting from epoch 3"]
    assert shaded.get_x() == 2.5 and shaded.get_x() + shaded.get_width() == 4.5
    # The train line is the model at each epoch's end, not Keras' running mean.
    assert list(accuracy.lines[0].get_ydata()) == [94, 97, 98, 99]


def test_learning_curves_show_the_test_accuracy_with_its_interval_at_the_kept_epoch():
    interval = stats.proportion(9791, 10_000)  # about 97.91% ± 0.28 points
    tested = plots.Tested(2, 0.9791, interval)
    accuracy, loss = plots.learning_curves(HISTORY, tested=tested).axes
    (bar,) = [c for c in accuracy.containers if c.get_label() == "test (95% interval)"]
    point, _, (vertical,) = bar.lines
    assert list(point.get_xdata()) == [2] and list(point.get_ydata()) == [97.91]
    ((x_low, low), (x_high, high)) = vertical.get_segments()[0]
    assert x_low == x_high == 2
    assert (low, high) == pytest.approx((100 * interval.low, 100 * interval.high))
    assert low < 97.91 < high and high - low < 0.6
    legend = [text.get_text() for text in accuracy.get_legend().get_texts()]
    assert "test (95% interval)" in legend
    assert not loss.containers, "the interval is an accuracy's: the loss panel has none"


def _save(folder: Path, tested: plots.Tested | None = None) -> list[Path]:
    history = pd.DataFrame({"epoch": [1], "accuracy": [0.9], "loss": [0.3]})
    labels = np.array([1, 2])
    proba = np.eye(10)[[1, 3]]
    return plots.save_all(
        folder,
        history,
        evaluate.confusion_matrix(labels, proba.argmax(axis=1)),
        np.zeros((2, 784)),
        labels,
        proba,
        tested=tested,
    )


def test_the_same_inputs_draw_the_same_bytes(tmp_path):
    tested = plots.Tested(1, 0.5, stats.proportion(1, 2))
    first, again = _save(tmp_path / "a", tested), _save(tmp_path / "b", tested)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    plain = _save(tmp_path / "c")
    assert plain[0].read_bytes() != first[0].read_bytes(), "the interval is in the picture"


def test_the_pictures_are_written_as_pngs(tmp_path):
    written = _save(tmp_path / "plots")
    assert [p.name for p in written] == [
        plots.LEARNING_CURVES,
        plots.CONFUSION,
        plots.MISCLASSIFIED,
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        p.name for p in written
    ), "a temporary file was left behind"
