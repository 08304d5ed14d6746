"""Stage 4: test metrics, the overfitting gap, per-class accuracy and the first predictions.

Core: pure functions over predicted probabilities. `run(paths, net, history)` writes
`metrics.json` (for `dvc metrics show`) and `predictions.csv` (one row per test digit, a DVC
confusion plot) and logs them in the open MLflow run. `main()` loads the trained model and
resumes the run that trained it, found by the weights' digest; a sweep job passes the model
it has just trained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import cli, config, files, model, plots, preprocess, provenance
from pipeline.tracking import record, runs, store

log = logging.getLogger(__name__)

PREDICT_BATCH = 1024
SHOWN = 10  # the notebook looks at the first test digits


def cross_entropy(proba: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean categorical cross-entropy, clipped as Keras clips it."""
    picked = proba[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1 - eps))))


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int = model.NUM_CLASSES
) -> np.ndarray:
    """Counts with true labels as rows and predicted labels as columns."""
    flat = labels.astype(np.int64) * num_classes + predicted
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def summarize(
    proba: np.ndarray, labels: np.ndarray, train_accuracy: float
) -> tuple[dict, np.ndarray]:
    """Test loss and accuracy, the notebook's overfitting gap, per-class accuracy; and the
    confusion matrix."""
    predicted = proba.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted)
    test_accuracy = float(np.mean(predicted == labels))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    metrics = {
        "test_loss": cross_entropy(proba, labels),
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "overfitting_gap": train_accuracy - test_accuracy,
        "per_class_accuracy": {str(digit): float(acc) for digit, acc in enumerate(per_class)},
    }
    return metrics, matrix


def predictions_table(proba: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": np.arange(len(labels)),
            "actual": labels,
            "predicted": proba.argmax(axis=1),
            "probability": proba.max(axis=1).round(4),
        }
    )


def run(paths: config.PathsConfig, net: Any, history: pd.DataFrame) -> dict:
    """In the open MLflow run: predict the test set, write metrics and predictions to `paths`,
    log them; return the metrics."""
    prepared = Path(paths.prepared)
    x, y = preprocess.load_split(prepared, "test")
    meta = preprocess.read_meta(prepared)
    proba = net.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    metrics, matrix = summarize(proba, y, float(history["accuracy"].iloc[-1]))
    if "val_accuracy" in history:
        metrics["val_accuracy"] = float(history["val_accuracy"].iloc[-1])
    table = predictions_table(proba, y)
    files.write_text(Path(paths.metrics), json.dumps(metrics, indent=2) + "\n")
    files.write_text(Path(paths.predictions), table.to_csv(index=False))
    record.data(x, y, meta, source=str(prepared), context="testing")
    # val_accuracy is already in the run, per epoch.
    record.metrics(
        {k: v for k, v in metrics.items() if k not in ("per_class_accuracy", "val_accuracy")}
        | {f"test_accuracy_{digit}": acc for digit, acc in metrics["per_class_accuracy"].items()}
    )
    record.document(
        {"rows": "true label", "columns": "predicted label", "matrix": matrix.tolist()},
        "confusion_matrix.json",
    )
    record.artifacts([Path(paths.metrics), Path(paths.predictions)])
    images = plots.save_all(Path(paths.plots), history, matrix, x, y, proba)
    record.artifacts(images, "plots")
    first = table.head(SHOWN)
    log.info(
        "first %d test digits: predicted %s, true %s",
        SHOWN,
        first["predicted"].tolist(),
        first["actual"].tolist(),
    )
    log.info(
        "test accuracy %.2f%% | train accuracy %.2f%% | overfitting gap %+.2f points",
        100 * metrics["test_accuracy"],
        100 * metrics["train_accuracy"],
        100 * metrics["overfitting_gap"],
    )
    return metrics


def main() -> None:
    cfg = config.load()
    paths = cfg.paths
    net = model.load(Path(paths.model))
    digest = provenance.weights_digest(net.get_weights())
    stage = {runs.STAGE_TAG: "train"}
    # The run that trained these weights: the latest with their digest (DVC may have
    # restored the model from its cache rather than retrain it, and then no new run exists).
    trained = runs.find(cfg.tracking.experiment, stage | {record.WEIGHTS_TAG: digest})
    if trained is None:
        log.warning(
            "no run in %s trained these weights (digest %s): recording into a new run",
            store.uri(),
            digest[:12],
        )
    with runs.start(cfg.tracking.experiment, trained, tags=stage) as run_id:
        if trained is None:
            record.weights(digest)
        run(paths, net, pd.read_csv(paths.history))
    log.info("all of it is in MLflow run %s (%s); browse it with `make ui`", run_id, store.uri())


if __name__ == "__main__":
    cli.run(main)
