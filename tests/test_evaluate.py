"""pipeline/evaluate.py: test metrics, the overfitting gap and the confusion matrix, against
hand-made cases."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline import evaluate, model


def test_cross_entropy_matches_keras():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10), size=50).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    expected = keras.losses.categorical_crossentropy(keras.utils.to_categorical(labels, 10), proba)
    assert model.cross_entropy(proba, labels) == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_confusion_matrix_rows_are_true_labels():
    matrix = evaluate.confusion_matrix(
        np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), num_classes=3
    )
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_summarize_gives_the_notebooks_gap_and_per_class_accuracy():
    labels = np.array([7, 2, 1, 1])
    proba = np.full((4, 10), 0.01)
    proba[np.arange(4), [7, 2, 1, 3]] = 0.91  # the last digit is wrong
    metrics, matrix = evaluate.summarize(proba, labels, train_accuracy=0.99)
    assert metrics["test_accuracy"] == 0.75
    assert metrics["overfitting_gap"] == pytest.approx(0.24)
    assert metrics["per_class_accuracy"]["1"] == 0.5 and metrics["per_class_accuracy"]["7"] == 1
    assert metrics["per_class_accuracy"]["0"] == 0  # no test digit of that class
    assert matrix.sum() == 4 and matrix[1, 3] == 1


def test_predictions_table_has_one_row_per_digit():
    proba = np.eye(10)[[7, 2]] * 0.9 + 0.01
    table = evaluate.predictions_table(proba, np.array([7, 3]))
    assert table["predicted"].tolist() == [7, 2]
    assert table["actual"].tolist() == [7, 3]
    assert table["probability"].tolist() == [0.91, 0.91]
