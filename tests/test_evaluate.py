"""pipeline/evaluate.py: test metrics, the overfitting gap and the confusion matrix, against
hand-made cases."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline import PipelineError, config, evaluate, preprocess
from pipeline.analysis import plots, stats
from pipeline.tracking import runs, store
from pipeline.training import engine, model


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


def test_the_test_accuracy_comes_with_its_95_percent_interval_over_the_test_digits():
    labels = np.arange(10_000) % 10
    proba = np.eye(10)[labels]
    proba[:210] = np.eye(10)[(labels[:210] + 1) % 10]  # 210 wrong: 97.90% right
    metrics, _ = evaluate.summarize(proba, labels, train_accuracy=0.99)
    low, high = metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]
    assert low < metrics["test_accuracy"] == 0.979 < high
    assert 100 * (high - low) / 2 == pytest.approx(0.28, abs=0.01)  # ± 0.28 points
    assert 0.2 < 100 * (high - 0.979) < 100 * (0.979 - low) < 0.35  # Wilson's leans to 50%


def test_the_validation_digits_are_the_ones_keras_did_not_train_on():
    assert evaluate.validation_digits(60_000, 0.2) == 12_000
    assert evaluate.validation_digits(4, 0.25) == 1
    with pytest.raises(PipelineError, match=r"validation_split=0.0 leaves none of the 4 training"):
        evaluate.validation_digits(4, 0.0)


def test_predictions_table_has_one_row_per_digit():
    proba = np.eye(10)[[7, 2]] * 0.9 + 0.01
    table = evaluate.predictions_table(proba, np.array([7, 3]))
    assert table["predicted"].tolist() == [7, 2]
    assert table["actual"].tolist() == [7, 3]
    assert table["probability"].tolist() == [0.91, 0.91]


def _evaluated(tmp_path, cfg, arrays) -> tuple[config.PathsConfig, Any, pd.DataFrame]:
    """Prepared arrays on disk, as the preprocess stage writes them, a model trained on
    them, and where evaluate writes."""
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for key, array in preprocess.prepare(arrays).items():
        np.save(prepared / preprocess.FILES[key], array)
    (prepared / preprocess.META).write_text(json.dumps({"fingerprint": "f" * 64}))
    out = tmp_path / "reports"
    paths = dataclasses.replace(
        cfg.paths,
        prepared=str(prepared),
        metrics=str(out / "metrics.json"),
        predictions=str(out / "predictions.csv"),
        plots=str(out / "plots"),
    )
    net, history = engine.train(cfg, *preprocess.load_split(prepared, "train"), verbose=0)
    return paths, net, history


def test_evaluate_logs_its_pictures_and_a_picture_that_fails_fails_it(
    tmp_path, tiny_cfg, mnist, monkeypatch
):
    paths, net, history = _evaluated(tmp_path, tiny_cfg, mnist.arrays)
    with runs.start("exp") as run_id:
        metrics = evaluate.run(paths, net, history, tiny_cfg.train.validation_split)
    client = MlflowClient(store.uri())
    pictures = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert pictures == {
        f"plots/{name}" for name in (plots.LEARNING_CURVES, plots.CONFUSION, plots.MISCLASSIFIED)
    }
    assert json.loads(Path(paths.metrics).read_text()) == metrics

    def no_ink(*args: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(plots, "save_all", no_ink)  # drawn in its own thread
    with pytest.raises(OSError, match="no space left"):
        with runs.start("exp") as failed:
            evaluate.run(paths, net, history, tiny_cfg.train.validation_split)
    assert client.get_run(failed).info.status == "FAILED"


def test_a_run_reports_its_accuracies_with_their_intervals(tmp_path, tiny_cfg, mnist, caplog):
    paths, net, history = _evaluated(tmp_path, tiny_cfg, mnist.arrays)
    with caplog.at_level(logging.INFO, logger=evaluate.__name__), runs.start("exp") as run_id:
        evaluate.run(paths, net, history, tiny_cfg.train.validation_split)
    written = json.loads(Path(paths.metrics).read_text())
    logged = MlflowClient(store.uri()).get_run(run_id).data.metrics
    digits = {"test_accuracy": len(mnist.arrays["y_test"]), "val_accuracy": 1}  # 1 of 4
    for metric, total in digits.items():
        low, high = written[metric + "_ci_low"], written[metric + "_ci_high"]
        assert low <= written[metric] <= high and high - low > 0.1  # few digits: wide
        expected = stats.proportion(round(written[metric] * total), total)
        assert (low, high) == pytest.approx((expected.low, expected.high))
        assert logged[metric + "_ci_low"] == low and logged[metric + "_ci_high"] == high
    said = " ".join(caplog.messages)
    for label, metric in (("test", "test_accuracy"), ("validation", "val_accuracy")):
        low, high = (100 * written[metric + suffix] for suffix in ("_ci_low", "_ci_high"))
        assert (
            f"{label} accuracy {100 * written[metric]:.2f}% "
            f"(95% interval {low:.2f} to {high:.2f})" in said
        )
