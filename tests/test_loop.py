"""pipeline/training/loop.py: Keras' fit with its steps scanned gives what Keras' fit gives, to
the bit: the same weights, history and callbacks' calls, whatever the batches a call."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from pipeline.training import callbacks, engine, internals, loop, model

pytestmark = pytest.mark.skipif(not internals.scannable(), reason="the scanned fit is JAX's")


class Calls(keras.callbacks.Callback):
    """Which hooks ran, in order, with the step numbers Keras gives them."""

    def __init__(self, stop_at_batch: int | None = None) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []
        self._stop_at = stop_at_batch

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(("epoch", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append(("batch", batch))
        self.seen.append(("random", int(np.random.get_state()[2])))  # draws so far

    def on_train_batch_end(self, batch, logs=None):
        if self._stop_at is not None and batch >= self._stop_at:
            self.model.stop_training = True


def _trained(cfg, data, fit, calls: Calls):
    engine.fresh_start(cfg.train.seed)
    x, y = data
    net = model.build(cfg.model, cfg.train, model.steps_per_epoch(len(x), cfg.train))
    recorder = callbacks.EpochRecorder(sample=(keras.ops.convert_to_tensor(x[:50]), y[:50]))
    targets = model.targets(y, cfg.train.loss)
    if fit is keras.Model.fit:  # as the engine calls each
        x, targets = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(targets)
    fit(
        net,
        x,
        targets,
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        validation_split=cfg.train.validation_split,
        callbacks=[recorder, calls],
        verbose=0,
    )
    return [w.tobytes() for w in net.get_weights()], recorder.rows


@pytest.mark.parametrize(
    "train",
    [
        {},  # 300 training digits in batches of 16: 18 whole ones and a tail of 12, one call
        {"steps_per_execution": 4, "validation_split": 0.0},  # 5 calls, the tail in the last
        {"steps_per_execution": 6, "batch_size": 25},  # 2 calls of whole batches, no tail
        {"batch_size": 512},  # fewer digits than a batch: the tail alone
    ],
)
def test_the_scanned_fit_gives_keras_fits_weights_history_and_calls(tiny_cfg, tiny_data, train):
    train = {"steps_per_execution": 32} | train
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, **train))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dropout=0.2))
    keras_calls, scanned_calls = Calls(), Calls()
    expected = _trained(cfg, tiny_data, keras.Model.fit, keras_calls)
    found = _trained(cfg, tiny_data, loop.fit, scanned_calls)
    assert found[0] == expected[0], "the weights differ from Keras' fit"
    assert [list(row.items()) for row in found[1]] == [list(row.items()) for row in expected[1]]
    assert scanned_calls.seen == keras_calls.seen


def test_a_callback_that_stops_training_mid_epoch_stops_it_after_that_call(tiny_cfg, tiny_data):
    train = dataclasses.replace(tiny_cfg.train, steps_per_execution=4, validation_split=0.0)
    cfg = dataclasses.replace(tiny_cfg, train=train)
    keras_calls, scanned_calls = Calls(stop_at_batch=5), Calls(stop_at_batch=5)
    expected = _trained(cfg, tiny_data, keras.Model.fit, keras_calls)
    found = _trained(cfg, tiny_data, loop.fit, scanned_calls)
    assert found == expected
    assert scanned_calls.seen == keras_calls.seen
    begun = [step for hook, step in scanned_calls.seen if hook == "batch"]
    assert begun == [0, 4], "it went on after the call in which the callback stopped it"
