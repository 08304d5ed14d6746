"""Stage 4: test metrics, the overfitting gap, per-class accuracy and the first predictions.
An accuracy comes with its 95% Wilson interval over the digits it was measured on
(`test_accuracy_ci_low`, `..._ci_high`; `val_accuracy_...` when the run validated): on 10,000
test digits a run's 97.9% is only known to about ±0.28 points.

Core: pure functions over predicted probabilities. `run(paths, net, history)` writes
`metrics.json` (for `dvc metrics show`) and `predictions.csv` (one row per test digit, a DVC
confusion plot) and logs them in the open MLflow run. `main()` loads the trained model and
resumes the run that trained it, found by the weights' digest (for a job done before, whose
model train restored, it writes the same outputs from that run: `restore`); a sweep job
passes the model it has just trained.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import PipelineError, config, preprocess
from pipeline.analysis import overfitting, plots, stats
from pipeline.common import entry, files, mnist, provenance
from pipeline.config import jobs
from pipeline.tracking import names, queues, record, reuse, runs, store
from pipeline.training import model

log = logging.getLogger(__name__)

SHOWN = 10  # the notebook looks at the first test digits
PLOTS = "plots"  # the run's artifact folder of the pictures
# What a user compares, first in `metrics.json`: `dvc exp show`'s columns, in the file's order
COMPARED: tuple[str, ...] = (names.TEST_ACCURACY, names.VAL_ACCURACY, names.TRAIN_TEST_GAP)
COMPARED += (names.BEST_VAL_LOSS_EPOCH,)  # a terminal 120 columns wide shows the first few


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int = mnist.NUM_CLASSES
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
    right = predicted == labels
    test_accuracy = float(np.mean(right))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    metrics = {
        names.TEST_LOSS: model.cross_entropy(proba, labels),
        names.TEST_ACCURACY: test_accuracy,
        **accuracy_interval(names.TEST_ACCURACY, int(right.sum()), len(labels)),
        names.TRAIN_ACCURACY: train_accuracy,
        names.TRAIN_TEST_GAP: train_accuracy - test_accuracy,
        "per_class_accuracy": {str(digit): float(acc) for digit, acc in enumerate(per_class)},
    }
    return metrics, matrix


def accuracy_interval(metric: str, correct: int, total: int) -> dict[str, float]:
    """`metric`'s 95% Wilson interval, `correct` of `total` digits, as the two metrics
    `<metric>_ci_low` and `<metric>_ci_high`: how far another draw of as many digits could
    move the accuracy."""
    found = stats.proportion(correct, total)
    return {metric + names.CI_LOW: found.low, metric + names.CI_HIGH: found.high}


def validation_digits(samples: int, validation_split: float) -> int:
    """How many of the `samples` training digits Keras validated on: those it did not train
    on."""
    digits = samples - model.training_part(samples, validation_split)
    if digits <= 0:
        raise PipelineError(
            f"the history has a validation accuracy, but validation_split={validation_split} "
            f"leaves none of the {samples} training digits to validate on: evaluate with the "
            "params the model was trained with (`dvc repro` reruns train if they changed)"
        )
    return digits


def compared_first(metrics: dict) -> dict:
    """`metrics` with the ones a user compares (`COMPARED`) first, the others in their order."""
    first = {key: metrics[key] for key in COMPARED if key in metrics}
    return first | {key: value for key, value in metrics.items() if key not in first}


def predictions_table(proba: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": np.arange(len(labels)),
            "actual": labels,
            "predicted": proba.argmax(axis=1),
            "probability": proba.max(axis=1).round(4),
        }
    )


def trained_accuracy(net: Any, prepared: Path, validation_split: float) -> float:
    """The final model's accuracy on the digits it trained on: not Keras' running mean over
    the last epoch, which lags behind the model."""
    x, y = preprocess.load_split(prepared, "train")
    part = model.training_part(len(x), validation_split)
    proba = net.predict(x[:part], batch_size=model.PREDICT_BATCH, verbose=0)
    return float(np.mean(proba.argmax(axis=1) == y[:part]))


def located(history: pd.DataFrame) -> dict[str, int | None]:
    """The best epochs and the onset of overfitting, when the run validated."""
    if "val_loss" not in history:
        return {}
    return overfitting.locate(
        history["val_loss"].tolist(), history["val_accuracy"].tolist()
    ).as_dict()


def _record(metrics: dict, matrix: np.ndarray, files_written: list[Path]) -> None:
    """The metrics in the open run, an onset that never came as a tag. The per-class
    accuracies stay in `metrics.json` (an artifact): as metrics, MLflow's UI would put their
    ten charts above the curves."""
    numbers = {
        key: value
        for key, value in metrics.items()
        if key not in ("per_class_accuracy", names.VAL_ACCURACY) and value is not None
    }  # val_accuracy is in the run already, per epoch
    record.metrics(numbers)
    if names.ONSET in metrics:
        record.tags({names.ONSET_TAG: str(metrics[names.ONSET] or "none")})
    record.document(
        {"rows": "true label", "columns": "predicted label", "matrix": matrix.tolist()},
        "confusion_matrix.json",
    )
    record.artifacts(files_written)


def run(
    paths: config.PathsConfig, net: Any, history: pd.DataFrame, validation_split: float
) -> dict:
    """In the open MLflow run: predict the test set (and the training digits), locate where
    overfitting starts, write metrics, predictions and pictures to `paths`, log them; return
    the metrics. The pictures are drawn in a thread of their own meanwhile: predicting the
    training digits and logging leave the GIL, so a second core draws (the saving is in
    docs/performance.md)."""
    prepared = Path(paths.prepared)
    x, y = preprocess.load_split(prepared, "test")
    proba = net.predict(x, batch_size=model.PREDICT_BATCH, verbose=0)
    final = overfitting.kept(history)  # the epoch whose weights the model holds
    metrics, matrix = summarize(proba, y, float(final["accuracy"]))
    where = located(history)
    tested = _tested(metrics, int(final["epoch"]))
    with ThreadPoolExecutor(1, thread_name_prefix="pictures") as pictures:
        drawn = pictures.submit(
            plots.save_all, Path(paths.plots), history, matrix, x, y, proba, where, tested
        )
        _measure(metrics, net, prepared, validation_split, history, where)
        table = predictions_table(proba, y)
        files.write_text(Path(paths.metrics), json.dumps(compared_first(metrics), indent=2) + "\n")
        files.write_text(Path(paths.predictions), table.to_csv(index=False))
        meta = preprocess.read_meta(prepared)
        record.data(x, y, meta, source=str(prepared), context="testing")
        _record(metrics, matrix, [Path(paths.metrics), Path(paths.predictions)])
        record.artifacts(drawn.result(), PLOTS)
    _report(metrics, table)
    return metrics


def _tested(metrics: dict, epoch: int) -> plots.Tested:
    """The test accuracy and its interval, for the learning curves, at the kept `epoch`."""
    key = names.TEST_ACCURACY
    interval = stats.Interval(metrics[key + names.CI_LOW], metrics[key + names.CI_HIGH])
    return plots.Tested(epoch, metrics[key], interval)


def _measure(
    metrics: dict,
    net: Any,
    prepared: Path,
    validation_split: float,
    history: pd.DataFrame,
    where: dict,
) -> None:
    """Add to `metrics` the final model's accuracy on its training digits and its gap, where
    overfitting starts, which epoch's weights the model holds, and that epoch's validation
    accuracy with its interval."""
    final = overfitting.kept(history)
    evaluated = trained_accuracy(net, prepared, validation_split)
    metrics[names.TRAIN_ACCURACY_EVALUATED] = evaluated
    metrics[names.TRAIN_TEST_GAP_EVALUATED] = evaluated - metrics[names.TEST_ACCURACY]
    metrics |= where
    metrics |= {names.EPOCHS_TRAINED: len(history), names.KEPT_EPOCH: int(final["epoch"])}
    if "val_accuracy" in history:
        val_accuracy = float(final["val_accuracy"])
        samples = len(preprocess.load_split(prepared, "train")[1])  # read once a process
        digits = validation_digits(samples, validation_split)
        metrics[names.VAL_ACCURACY] = val_accuracy
        # Keras gives the fraction alone; the count it was measured from is a whole number
        metrics |= accuracy_interval(names.VAL_ACCURACY, round(val_accuracy * digits), digits)


def _report(metrics: dict, table: pd.DataFrame) -> None:
    first = table.head(SHOWN)
    log.info(
        "first %d test digits: predicted %s, true %s",
        SHOWN,
        first["predicted"].tolist(),
        first["actual"].tolist(),
    )
    measured = [_with_interval(metrics, names.TEST_ACCURACY, "test accuracy")]
    if names.VAL_ACCURACY in metrics:
        measured.append(_with_interval(metrics, names.VAL_ACCURACY, "validation accuracy"))
    log.info(
        "%s | train accuracy %.2f%% (the final model: %.2f%%) | "
        "overfitting gap %+.2f points (the final model's: %+.2f)",
        " | ".join(measured),
        100 * metrics[names.TRAIN_ACCURACY],
        100 * metrics[names.TRAIN_ACCURACY_EVALUATED],
        100 * metrics[names.TRAIN_TEST_GAP],
        100 * metrics[names.TRAIN_TEST_GAP_EVALUATED],
    )
    if names.BEST_VAL_LOSS_EPOCH in metrics:
        onset = metrics[names.ONSET]
        log.info(
            "validation loss lowest at epoch %d, accuracy highest at epoch %d; %s",
            metrics[names.BEST_VAL_LOSS_EPOCH],
            metrics[names.BEST_VAL_ACCURACY_EPOCH],
            f"overfitting from epoch {onset}" if onset else "no overfitting yet",
        )


def _with_interval(metrics: dict, metric: str, label: str) -> str:
    """`test accuracy 97.91% (95% interval 97.62 to 98.17)`."""
    low, high = metrics[metric + names.CI_LOW], metrics[metric + names.CI_HIGH]
    return (
        f"{label} {100 * metrics[metric]:.2f}% ({100 * stats.LEVEL:.0f}% interval "
        f"{100 * low:.2f} to {100 * high:.2f})"
    )


def restore(paths: config.PathsConfig, done: reuse.Done) -> None:
    """The outputs of a job evaluated before, from its run: the same bytes, nothing redone."""
    for path in (Path(paths.metrics), Path(paths.predictions)):
        with reuse.fetched(done, path.name) as got:
            files.copy(got, path)
    with reuse.fetched(done, PLOTS) as got:
        for picture in sorted(got.iterdir()):
            files.copy(picture, Path(paths.plots) / picture.name)
    log.info("evaluated before, in run %s: its metrics, predictions and plots", done.run_id)


def main(argv: list[str] | None = None) -> None:
    entry.parser("pipeline.evaluate", __doc__).parse_args(argv)
    cfg = config.load()
    paths = cfg.paths
    net = model.load(Path(paths.model))
    digest = provenance.weights_digest(net.get_weights())
    if cfg.reuse and (done := reuse.find(cfg.tracking.experiment, jobs.key_for(cfg))):
        if done.weights == digest:  # `train` restored this job's model from its run
            restore(paths, done)
            return
    stage = {names.STAGE: "train"}
    # The run that trained these weights: the latest with their digest (DVC may have
    # restored the model from its cache rather than retrain it, and then no new run exists).
    trained = runs.find(cfg.tracking.experiment, stage | {names.WEIGHTS: digest})
    if trained is None:
        log.warning(
            "no run in %s trained these weights (digest %s): recording into a new run",
            store.uri(),
            digest[:12],
        )
    queued = trained if trained and queues.queued() else None  # a job of the queue's sweep
    with queues.publishing_report(queued, last_stage=True):
        with runs.start(cfg.tracking.experiment, trained, tags=stage) as run_id:
            if trained is None:
                record.weights(digest)
            run(paths, net, pd.read_csv(paths.history), cfg.train.validation_split)
        # a job done twice (`reuse=false`): this one is the duplicate
        reuse.mark_duplicates(run_id)
    log.info("all of it is in MLflow run %s (%s); browse it with `make ui`", run_id, store.uri())


if __name__ == "__main__":
    entry.run(main)
