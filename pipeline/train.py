"""Stage 3: train the network, save it as `.keras`, and record every epoch.

Core: `train(cfg, x, y, on_epoch)` seeds, builds and fits, and returns the model and its
per-epoch history. `run(cfg, paths)` does that inside an MLflow run: it reads the prepared
arrays, writes the model, the history CSV (a DVC plot) and the environment it ran in, and
logs them with the weights' digest. `main()` opens a new
run for it, which evaluate later adds to; a sweep job (`pipeline.sweep`) opens a child run.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from pipeline import (
    PipelineError,
    checkpoints,
    cli,
    config,
    files,
    model,
    overfitting,
    preprocess,
    provenance,
)
from pipeline.tracking import record, registry, runs, store

log = logging.getLogger(__name__)

# The epoch the run went on from (its checkpoint's), 0 from scratch, `off` without the cache.
CHECKPOINT_TAG, CHECKPOINT_KEY_TAG = "checkpoint_from_epoch", "checkpoint_key"
EpochSink = Callable[[int, dict[str, float]], None]


class EpochRecorder(keras.callbacks.Callback):
    """Collects one history row per epoch and passes it on with the epoch's wall time, which
    stays out of the history (the same inputs give the same history, to the bit).

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
        self.rows: list[dict[str, float]] = []
        self._on_epoch = on_epoch
        self._sample = sample
        self._started = 0.0

    def _measured(self) -> dict[str, float]:
        features, labels = self._sample  # type: ignore[misc]
        proba = keras.ops.convert_to_numpy(self.model(features, training=False))
        return {
            "train_sample_accuracy": float(np.mean(proba.argmax(axis=1) == labels)),
            "train_sample_loss": model.cross_entropy(proba, labels),
        }

    def replay(self, rows: list[dict[str, float]]) -> None:
        """Epochs trained before (from a checkpoint), passed on as they were, without a wall
        time: they took none here."""
        for row in rows:
            self.rows.append(row)
            if self._on_epoch:
                self._on_epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})

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
            self._on_epoch(epoch + 1, row | {"epoch_time_s": time.perf_counter() - self._started})


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
        cli.check_stop()  # Ctrl-C or SIGTERM, held back while TensorFlow ran
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            raise Diverged(
                f"the training loss became {float((logs or {})['loss'])} in epoch {self._epoch}: "
                "training diverged, and no model was saved or registered; lower "
                f"train.learning_rate (now {self._learning_rate:g}), for example "
                f"train.learning_rate={self._learning_rate / 100:g}"
            ) from None


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' own, keeping the best epoch's weights (restored when training ends, stopped
    early or not), able to go on from a checkpoint: `replay` takes it through the epochs
    trained before, and the start of `fit` then keeps what they taught it."""

    def __init__(self, stopping: config.EarlyStoppingConfig) -> None:
        super().__init__(
            monitor=stopping.monitor.value,
            patience=stopping.patience,
            min_delta=stopping.min_delta,
            restore_best_weights=True,
        )
        self._replayed = False

    def replay(self, rows: list[dict[str, float]]) -> int | None:
        """From a fresh start, the epochs of `rows` as if trained (the model's weights stand
        in for the best ones: set `best_weights` after); the epoch it stops at, if it does."""
        super().on_train_begin()
        self._replayed = True
        self.model.stop_training = False
        for row in rows:
            self.on_epoch_end(int(row["epoch"]) - 1, row)
            if self.model.stop_training:
                return int(row["epoch"])
        return None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._replayed:
            super().on_train_begin(logs)


def early_stopping(stopping: config.EarlyStoppingConfig) -> EarlyStopping | None:
    """Keras' early stopping as configured; None when off."""
    return EarlyStopping(stopping) if stopping.enabled else None


class Keep(keras.callbacks.Callback):
    """Writes each finished epoch's checkpoint, with the history `recorder` holds so far and
    the random state as the epoch's first step found it (`checkpoints.random_state`)."""

    def __init__(self, saved_in: checkpoints.Training, recorder: EpochRecorder) -> None:
        super().__init__()
        self._saved_in = saved_in
        self._recorder = recorder
        self._random: list = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._random = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if not self._random:
            self._random = checkpoints.random_state()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        random = self._random or checkpoints.random_state()  # an epoch of no steps
        self._saved_in.write(self.model, epoch + 1, self._recorder.rows, random)


Start = tuple[int, list[dict[str, float]], bool]  # epochs done, their history, stopped there
NEW: Start = (0, [], False)


def resume(
    net: keras.Model,
    saved_in: checkpoints.Training | None,
    epochs: int,
    stopper: EarlyStopping | None,
) -> Start:
    """Put `net` (and `stopper`) where the cached checkpoint with the most epochs at or below
    `epochs` left the training; with early stopping, where that training stopped if it stopped
    sooner, its best epoch's weights taken from their own checkpoint. (0, [], False) when
    there is none to go on from."""
    if stopper:
        stopper.set_model(net)
    start = _latest(net, saved_in, epochs, stopper) if saved_in else NEW
    if saved_in:
        saved_in.started_from = start[0]
        if start[0]:
            log.info(
                "going on from the checkpoint of epoch %d%s (cache key %s)",
                start[0],
                ", where early stopping stopped" if start[2] else "",
                saved_in.key[:12],
            )
    return start


def _latest(
    net: keras.Model, saved_in: checkpoints.Training, epochs: int, stopper: EarlyStopping | None
) -> Start:
    limit = epochs
    for epoch in saved_in.epochs(at_most=epochs):
        saved = saved_in.read(epoch) if epoch <= limit else None
        if saved is None:
            continue
        stopped = stopper.replay(saved.rows) if stopper else None
        if stopper:
            if stopped is not None and stopped < epoch:
                limit = stopped  # the training ended there: that checkpoint is its state
                continue
            best_epoch = stopper.best_epoch + 1
            best = saved if best_epoch == epoch else saved_in.read(best_epoch)
            if best is None:
                continue
            saved_in.load(net, best)
            stopper.best_weights = net.get_weights()
        saved_in.load(net, saved)
        return epoch, saved.rows, stopped is not None
    if stopper:
        stopper.replay([])
    return NEW


def fresh_start(value: int) -> None:
    """Nothing left from an earlier model in this process (as in a Hydra sweep), compilations
    kept, everything seeded with `value`."""
    keras.backend.clear_session(free_memory=False)  # gc.collect() here costs 0.5 s a job
    keep_compilations()
    without_tensorflow()
    seed(value)


def without_tensorflow() -> None:
    """On another backend, in a process that has not imported TensorFlow: tell Keras it is not
    there. Saving a model otherwise imports it (about 4 s, keras-team/keras#18455) only to ask
    whether the model's config holds TensorFlow objects (`tf.TensorShape`), which a process
    without TensorFlow cannot have made. What is saved is the same bytes."""
    if keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules:
        from keras.src.utils import module_utils  # Keras' lazy `tensorflow`, pinned keras

        module_utils.tensorflow._available = False


def seed(value: int) -> None:
    """Seed what decides the numbers, after `clear_session`. Keras' `set_random_seed` seeds
    Python, NumPy and TensorFlow, importing TensorFlow to do so (2 s) whatever the backend;
    on another backend, where nothing here uses TensorFlow, Python's and NumPy's seeds are
    what it sets that counts (the cleared session's seed generator is drawn from Python's)."""
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(value)
    else:
        random.seed(value)
        np.random.seed(value)


def keep_compilations() -> None:
    """On JAX, keep XLA's compiled steps across processes in `<project root>/.jax-cache`, or
    where JAX_COMPILATION_CACHE_DIR says (`reproduce` points a rebuild at its project's): a
    training of the same shapes then skips compiling, and its first epoch takes about 0.4 s
    more than a steady one instead of about 2.9 s (docs/performance.md). The same compiled
    code gives the same numbers. TensorFlow traces its steps in Python: nothing to keep."""
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", config.compilations())
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def _sample(train_cfg: config.TrainConfig, x: np.ndarray, y: np.ndarray) -> Any:
    """The first `train_sample` training digits (never validation's), as `EpochRecorder`
    measures them; None for none."""
    sampled = min(train_cfg.train_sample, model.training_part(len(x), train_cfg.validation_split))
    return (keras.ops.convert_to_tensor(x[:sampled]), np.asarray(y[:sampled])) if sampled else None


def train(
    cfg: config.Config,
    x: np.ndarray,
    y: np.ndarray,
    on_epoch: EpochSink | None = None,
    verbose: int = 2,
    saved_in: checkpoints.Training | None = None,
) -> tuple[keras.Model, pd.DataFrame]:
    """From a clean Keras state (nothing left from an earlier model in this process, as in a
    Hydra sweep), seed everything, build the model from config and fit it; return it with its
    history. With `saved_in`, go on from its latest checkpoint (`resume`) and keep each epoch
    there: the same model and history as from scratch, to the bit."""
    fresh_start(cfg.train.seed)
    net = model.build(cfg.model, cfg.train)
    recorder = EpochRecorder(on_epoch, _sample(cfg.train, x, y))
    stopper = early_stopping(cfg.train.early_stopping)
    start, rows, stopped = resume(net, saved_in, cfg.train.epochs, stopper)
    recorder.replay(rows)
    keep = [Keep(saved_in, recorder)] if saved_in else []
    callbacks = [recorder, *keep, StopOnNaN(cfg.train.learning_rate), *filter(None, [stopper])]
    # As backend tensors, not numpy arrays: Keras then skips a per-fit copy and per-batch
    # slicing of the arrays, 0.5 s a fit and 0.2 s an epoch here.
    features = keras.ops.convert_to_tensor(x)
    targets = keras.ops.convert_to_tensor(model.targets(y, cfg.train.loss))
    with cli.deferred_stops():
        net.fit(
            features,
            targets,
            initial_epoch=start,
            epochs=start if stopped else cfg.train.epochs,  # none more once stopped
            batch_size=cfg.train.batch_size,
            validation_split=cfg.train.validation_split,
            callbacks=callbacks,
            verbose=verbose,
        )
    history = pd.DataFrame(recorder.rows)
    best = stopper.best_epoch + 1 if stopper else len(history)
    history[overfitting.KEPT] = (history["epoch"] == best).astype(int)
    return net, history


def run(cfg: config.Config, paths: config.PathsConfig) -> tuple[keras.Model, pd.DataFrame, str]:
    """In the open MLflow run: log the config, the data and the environment, train, write the
    model, its history and the environment to `paths`, log them with the weights' digest;
    return the model, its history and its `models:/` URI."""
    prepared = Path(paths.prepared)
    x, y = preprocess.load_split(prepared, "train")
    meta = preprocess.read_meta(prepared)
    record.configuration(cfg)
    facts = provenance.environment()
    record.environment(facts)
    record.data(x, y, meta, source=str(prepared), context="training")
    cache = checkpoints.Cache.of(cfg.checkpoints)
    saved_in = cache.training(checkpoints.key(cfg, meta["fingerprint"], facts)) if cache else None
    trained = model.training_part(len(x), cfg.train.validation_split)
    log.info(
        "training %d epochs of batch %d on %d digits, validating on %d",
        cfg.train.epochs,
        cfg.train.batch_size,
        trained,
        len(x) - trained,
    )
    net, history = train(cfg, x, y, on_epoch=record.epoch, saved_in=saved_in)
    started = {CHECKPOINT_TAG: str(saved_in.started_from) if saved_in else "off"}
    record.tags(started | ({CHECKPOINT_KEY_TAG: saved_in.key} if saved_in else {}))
    if cfg.train.early_stopping.enabled:
        kept = int(overfitting.kept(history)["epoch"])
        log.info("early stopping: trained %d epochs, kept epoch %d's weights", len(history), kept)
    record.weights(provenance.weights_digest(net.get_weights()))
    model.save(net, Path(paths.model))
    files.write_text(Path(paths.history), history.to_csv(index=False))
    files.write_text(Path(paths.environment), json.dumps(facts, indent=2) + "\n")
    record.artifacts([Path(paths.history)])
    return net, history, register(cfg, net, history)


def register(cfg: config.Config, net: keras.Model, history: pd.DataFrame) -> str:
    """Log the model in the open run and register it, @champion if it wins; its URI."""
    model_uri = registry.log_model(net)
    final = overfitting.kept(history)
    val_accuracy = float(final["val_accuracy"]) if "val_accuracy" in final else None
    log.info(
        "final training accuracy %.2f%%%s",
        100 * final["accuracy"],
        "" if val_accuracy is None else f", validation {100 * val_accuracy:.2f}%",
    )
    name = cfg.tracking.registered_model
    version, champion = registry.register(name, model_uri, val_accuracy)
    if champion:
        verdict = f"now @{registry.CHAMPION}"
    elif val_accuracy is None:
        verdict = "no validation accuracy, so never the champion"
    else:
        verdict = f"@{registry.CHAMPION} stays on a version at least as good on validation"
    log.info("registered as %s version %d: %s", name, version, verdict)
    return model_uri


def write_record(path: Path, run_id: str, model_uri: str) -> None:
    """The run's id and model URI, for people to find a sweep job's run from its folder."""
    record = {"run_id": run_id, "model_uri": model_uri, "tracking_uri": store.uri()}
    files.write_text(path, json.dumps(record, indent=2) + "\n")


def main() -> None:
    cfg = config.load()
    # No file links the outputs to the run: they would differ on every run. Evaluate finds
    # the run by the weights' digest.
    with runs.start(cfg.tracking.experiment, tags={runs.STAGE_TAG: "train"}) as run_id:
        log.info("MLflow run %s", run_id)
        run(cfg, cfg.paths)


if __name__ == "__main__":
    cli.run(main)
