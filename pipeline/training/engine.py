"""The training engine: seed, build, fit with the callbacks, early stopping, and go on from the
checkpoint cache and keep each epoch there. No MLflow, no DVC, no files of its own: config and
arrays in, the model and its history out. The train stage, sweep jobs and `rebuild` all train
through `train()`, and the checkpoint cache keys a training by this module's code.

Resuming asks the cache once where to start (`resume`), puts the model where that checkpoint
left it (`load`) and hands the fit one callback (`Keep`) that gives the cache each epoch's
state; the cache stores and finds, and drives nothing.
"""

from __future__ import annotations

import io
import logging
import random
from typing import Any

import keras
import numpy as np
import pandas as pd

from pipeline import config
from pipeline.analysis import overfitting
from pipeline.common import stops
from pipeline.training import callbacks, internals, loop, model
from pipeline.training.callbacks import EarlyStopping, EpochSink, Row
from pipeline.training.checkpoints import Saved, Training

log = logging.getLogger(__name__)


def fresh_start(value: int) -> None:
    """Nothing left from an earlier model in this process (as in a Hydra sweep), compilations
    kept, everything seeded with `value`."""
    # free_memory=False: its gc.collect() would cost a sweep job more than the rest of this
    keras.backend.clear_session(free_memory=False)
    model.keep_compilations()
    internals.without_tensorflow()
    seed(value)


def seed(value: int) -> None:
    """Seed what decides the numbers, after `clear_session`. Keras' `set_random_seed` seeds
    Python, NumPy and TensorFlow, importing TensorFlow to do so whatever the backend; on
    another backend, where nothing here uses TensorFlow, Python's and NumPy's seeds are what
    it sets that counts (the cleared session's seed generator is drawn from Python's)."""
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(value)
    else:
        random.seed(value)
        np.random.seed(value)


# A training's state beyond its history: the variables Keras' `save_weights` keeps (the
# model's and the optimizer's, what `keras.callbacks.BackupAndRestore` restores) and NumPy's
# and Python's random states (the order of the training digits, on backends that draw it
# from NumPy).


def _variables(net: keras.Model) -> list:
    return [*net.variables, *net.optimizer.variables]


def state(net: keras.Model) -> bytes:
    """The variables' values as an .npz file, named by their Keras paths, made in memory: h5py
    (Keras' `save_weights`) crashes the process with SIGSEGV when the disk fills mid-write,
    where Python's own write of these bytes fails with an OSError."""
    buffer = io.BytesIO()
    ops = keras.ops
    arrays = {v.path: ops.convert_to_numpy(ops.convert_to_tensor(v)) for v in _variables(net)}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def random_state() -> list:
    """NumPy's and Python's global random states, as JSON. Keras draws each epoch's order of
    training digits from NumPy (on backends other than TensorFlow) as the epoch's data
    iterator is made, before its first step, and the next epoch's before this one's last step
    ends: what epoch N+1 needs is the state as epoch N's first step found it."""
    numpy: Any = np.random.get_state()  # (name, keys, position, has_gauss, gauss)
    version, internal, gauss = random.getstate()
    return [[numpy[0], numpy[1].tolist(), *numpy[2:]], [version, list(internal), gauss]]


def load(net: keras.Model, saved: Saved) -> None:
    """Put a built, compiled model and the random states where `saved` was."""
    if not net.optimizer.built:
        net.optimizer.build(net.trainable_variables)
    with np.load(io.BytesIO(saved.weights)) as arrays:
        for variable, name in zip(_variables(net), arrays.files, strict=True):
            variable.assign(arrays[name])
    (name, keys, position, has_gauss, gauss), (version, internal, python_gauss) = (
        saved.random_state
    )
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate((version, tuple(internal), python_gauss))


class Keep(keras.callbacks.Callback):
    """Gives the cache each finished epoch's state with the history so far, and the random
    state as the epoch's first step found it (`random_state`)."""

    def __init__(self, saved_in: Training, recorder: callbacks.EpochRecorder) -> None:
        super().__init__()
        self._saved_in = saved_in
        self._recorder = recorder
        self._random: list = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._random = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if not self._random:
            self._random = random_state()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        random_at_start = self._random or random_state()  # an epoch of no steps
        self._saved_in.write(epoch + 1, self._recorder.rows, state(self.model), random_at_start)


class Resume:
    """Where a training goes on from: the epochs done, their history, whether early stopping
    had stopped there, and the early stopping that followed them (None when off)."""

    def __init__(self, stopping: config.EarlyStoppingConfig, saved: Saved | None = None) -> None:
        self.stopper = callbacks.early_stopping(stopping)
        self.epoch = saved.epoch if saved else 0
        self.rows: list[Row] = saved.rows if saved else []
        if self.stopper:
            self.stopper.follow(self.rows)

    @property
    def stopped(self) -> bool:
        return self.stopper is not None and self.stopper.stopped_at is not None


def resume(
    net: keras.Model, saved_in: Training | None, epochs: int, stopping: config.EarlyStoppingConfig
) -> Resume:
    """Put `net` where the cached checkpoint with the most epochs at or below `epochs` left its
    training; with early stopping, where that training stopped if it stopped sooner, its best
    epoch's weights taken from their own checkpoint. From scratch when there is none."""
    limit = epochs
    while saved_in and (saved := saved_in.latest(at_most=limit)) is not None:
        found = Resume(stopping, saved)
        stopper = found.stopper
        if stopper and stopper.stopped_at is not None and stopper.stopped_at < saved.epoch:
            limit = stopper.stopped_at  # the training ended there: that checkpoint is its state
            continue
        if stopper:
            best = (
                saved if stopper.best_epoch == saved.epoch else saved_in.read(stopper.best_epoch)
            )
            if best is None:
                limit = saved.epoch - 1
                continue
            load(net, best)
            stopper.best_weights = net.get_weights()
        load(net, saved)
        log.info(
            "going on from the checkpoint of epoch %d%s (cache key %s)",
            saved.epoch,
            ", where early stopping stopped" if found.stopped else "",
            saved_in.key[:12],
        )
        return found
    return Resume(stopping)


def _sample(train_cfg: config.TrainConfig, x: np.ndarray, y: np.ndarray) -> Any:
    """The first `train_sample` training digits (never validation's), as `EpochRecorder`
    measures them; None for none."""
    sampled = min(train_cfg.train_sample, model.training_part(len(x), train_cfg.validation_split))
    return (keras.ops.convert_to_tensor(x[:sampled]), np.asarray(y[:sampled])) if sampled else None


# An epoch's log line: (label, accuracy, loss), by Keras' names.
_SAID = (("accuracy", "accuracy", "loss"), ("validation", "val_accuracy", "val_loss"))


def _logged(cfg: config.Config, on_epoch: EpochSink | None) -> EpochSink:
    """`on_epoch`, after a log line for each epoch trained (not those from a checkpoint): what
    Keras' own line says (`verbose=2`), in the pipeline's log."""

    def sink(number: int, values: dict[str, float]) -> None:
        if "epoch_time_s" in values:  # trained here
            said = ", ".join(
                f"{label} {100 * values[acc]:.2f}% (loss {values[loss]:.4f})"
                for label, acc, loss in _SAID
                if acc in values
            )
            took = values["epoch_time_s"]
            log.info("epoch %d/%d in %.1f s: %s", number, cfg.train.epochs, took, said)
        if on_epoch:
            on_epoch(number, values)

    return sink


def train(
    cfg: config.Config,
    x: np.ndarray,
    y: np.ndarray,
    on_epoch: EpochSink | None = None,
    verbose: int = 0,
    saved_in: Training | None = None,
) -> tuple[keras.Model, pd.DataFrame]:
    """From a clean Keras state, seed everything, build the model from config and fit it;
    return it with its history. With `saved_in`, go on from its latest checkpoint (`resume`)
    and keep each epoch there: the same model and history as from scratch, to the bit. Each
    epoch trained is a log line; `verbose` is Keras' own output (2: a line an epoch)."""
    fresh_start(cfg.train.seed)
    net = model.build(cfg.model, cfg.train, model.steps_per_epoch(len(x), cfg.train))
    recorder = callbacks.EpochRecorder(_logged(cfg, on_epoch), _sample(cfg.train, x, y))
    start_at = resume(net, saved_in, cfg.train.epochs, cfg.train.early_stopping)
    if saved_in:
        saved_in.started_from = start_at.epoch
    recorder.replay(start_at.rows, net)
    stopper: EarlyStopping | None = start_at.stopper
    keep = [Keep(saved_in, recorder)] if saved_in else []
    stop_on_nan = callbacks.StopOnNaN(cfg.train.learning_rate)
    with stops.deferred():
        loop.fit(
            net,
            x,
            model.targets(y, cfg.train.loss),
            initial_epoch=start_at.epoch,
            epochs=start_at.epoch if start_at.stopped else cfg.train.epochs,  # none once stopped
            batch_size=cfg.train.batch_size,
            validation_split=cfg.train.validation_split,
            callbacks=[recorder, *keep, stop_on_nan, *filter(None, [stopper])],
            verbose=verbose,
        )
    history = pd.DataFrame(recorder.rows)
    best = stopper.best_epoch if stopper else len(history)
    history[overfitting.KEPT] = (history["epoch"] == best).astype(int)
    return net, history
