"""pipeline/evaluate.py: test metrics, the overfitting gap and the confusion matrix, against
hand-made cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline import config, engine, evaluate, model, plots, preprocess
from pipeline.tracking import runs, store


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
