"""The training engine's Keras callbacks: the history of each epoch, a stop on NaN (or on
Ctrl-C), and early stopping. Public Keras API only (`keras.callbacks.Callback`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from pipeline import PipelineError, config
from pipeline.common import stops
from pipeline.training import model
from pipeline.training.checkpoints import Row

EpochSink = Callable[[int, dict[str, float]], None]


class EpochRecorder(keras.callbacks.Callback):
    """Collects one history row per epoch and passes it on with the epoch's wall time and the
    optimizer's learning rate as it ended (`epoch_time_s`, `learning_rate`), which stay out of
    the history (the same inputs give the same history, to the bit).

    A row holds Keras' metrics under their Keras names (`accuracy` and `loss` are running
    means over the epoch, taken while the model still changes), validation's, and, given a
    `sample` of training digits, the model as it stands at the epoch's end measured on them
    (`train_sample_accuracy`, `train_sample_loss`): the true `train_val_gap` is that accuracy
    minus validation's, Keras' running mean standing in without a sample.
    """

    def __init__(
        self, on_epoch: EpochSink | None = None, sample: tuple[Any, np.ndarray] | None = None
    ) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self._on_epoch = on_epoch
        self._sample = sample
        self._started = 0.0

    def _measured(self) -> Row:
        features, labels = self._sample  # type: ignore[misc]
        proba = keras.ops.convert_to_numpy(self.model(features, training=False))
        return {
            "train_sample_accuracy": float(np.mean(proba.argmax(axis=1) == labels)),
            "train_sample_loss": model.cross_entropy(proba, labels),
        }

    def _learning_rate(self) -> Row:
        """The optimizer's learning rate now (a schedule's value at this step), as the shortest
        decimal of its float32: 0.001, not 0.0010000000474974513."""
        ops = keras.ops  # a variable, or a schedule's tensor
        rate = ops.convert_to_numpy(ops.convert_to_tensor(self.model.optimizer.learning_rate))
        return {"learning_rate": float(str(np.float32(rate)))}

    def replay(self, rows: list[Row], net: keras.Model) -> None:
        """Epochs trained before (from a checkpoint, which `net` was set to), passed on as they
        were with the learning rate it holds, without a wall time: they took none here."""
        self.set_model(net)  # before `fit` does
        for row in rows:
            self.rows.append(row)
            if self._on_epoch:
                values = {k: v for k, v in row.items() if k != "epoch"}
                self._on_epoch(int(row["epoch"]), values | self._learning_rate())

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {key: float(value) for key, value in (logs or {}).items()}
        if self._sample is not None:
            row |= self._measured()
        if "val_accuracy" in row:
            trained = row.get("train_sample_accuracy", row["accuracy"])
            row["train_val_gap"] = trained - row["val_accuracy"]
        self.rows.append({"epoch": epoch + 1, **row})
        if self._on_epoch:
            took = {"epoch_time_s": time.perf_counter() - self._started}
            self._on_epoch(epoch + 1, row | took | self._learning_rate())


class Diverged(PipelineError):
    """The loss became NaN or infinite: nothing the run made is worth keeping."""


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' own check after every call into the backend, failing with an error that says
    what to do; and where a Ctrl-C or SIGTERM that arrived meanwhile stops training."""

    def __init__(self, learning_rate: float) -> None:
        super().__init__(raise_error=True)
        self._learning_rate = learning_rate
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        stops.check()  # Ctrl-C or SIGTERM, held back while the backend ran
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            raise Diverged(
                f"the training loss became {float((logs or {})['loss'])} in epoch {self._epoch}: "
                "training diverged, and no model was saved or registered; lower "
                f"train.learning_rate (now {self._learning_rate:g}), for example "
                f"train.learning_rate={self._learning_rate / 100:g}"
            ) from None


class EarlyStopping(keras.callbacks.Callback):
    """Keras' `EarlyStopping(restore_best_weights=True)`, rule for rule: an epoch improves on
    the best when the monitored value beats it by more than `min_delta` (compared in float32,
    as Keras' ops compare); training stops once `patience` epochs in a row have not improved
    (never after the first); it ends with the best epoch's weights, stopped early or not.

    Written on the public `Callback` API rather than as a subclass of Keras' (whose state is
    private) so that a training can go on from a checkpoint: `follow(rows)` takes it through
    the epochs trained before, from their history alone."""

    def __init__(self, stopping: config.EarlyStoppingConfig) -> None:
        super().__init__()
        self.monitor = stopping.monitor.value
        self.patience = stopping.patience
        lower = self.monitor.removeprefix("val_") == "loss"
        self._better = np.less if lower else np.greater
        self._delta = -stopping.min_delta if lower else stopping.min_delta  # as Keras signs it
        self.best: float | None = None
        self.best_epoch = 0  # counted from 1; 0 before any
        self.best_weights: list | None = None
        self.stopped_at: int | None = None  # the epoch it stopped after, counted from 1
        self._wait = 0

    def update(self, epoch: int, row: Row) -> bool:
        """Epoch `epoch` (from 1) ended with `row`: whether it is the best so far."""
        value = row.get(self.monitor)
        if value is None:
            return False
        self._wait += 1
        if self.best is None or self._better(
            np.float32(value - self._delta), np.float32(self.best)
        ):
            self.best, self.best_epoch, self._wait = float(value), epoch, 0
            return True
        if self._wait >= self.patience and epoch > 1:
            self.stopped_at = epoch
        return False

    def follow(self, rows: list[Row]) -> int | None:
        """Take the epochs of `rows` as if trained; the epoch it stops at, if it does."""
        for row in rows:
            self.update(int(row["epoch"]), row)
            if self.stopped_at is not None:
                return self.stopped_at
        return None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.update(epoch + 1, logs or {}):
            self.best_weights = self.model.get_weights()
        if self.stopped_at is not None:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def early_stopping(stopping: config.EarlyStoppingConfig) -> EarlyStopping | None:
    """Early stopping as configured; None when off."""
    return EarlyStopping(stopping) if stopping.enabled else None
