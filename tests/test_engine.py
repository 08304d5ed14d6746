"""pipeline/training/engine.py and its callbacks: the training engine on tiny synthetic digits: it
learns and records every epoch, early stopping keeps the best epoch as Keras' own would, and
the same seed gives the same weights."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from pipeline import config
from pipeline.common import provenance
from pipeline.config import Loss
from pipeline.training import callbacks, engine, model

from .helpers.data import synthetic_digits


def test_train_learns_and_records_every_epoch(tiny_cfg, tiny_data, caplog):
    seen = []
    caplog.set_level("INFO", logger="pipeline.training.engine")
    net, history = engine.train(
        tiny_cfg, *tiny_data, on_epoch=lambda e, m: seen.append((e, m)), verbose=0
    )
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["val_accuracy"].iloc[-1] > 0.9, "the model did not learn a trivial task"
    # The true gap: the model at each epoch's end on training digits, against validation.
    gap = history["train_sample_accuracy"] - history["val_accuracy"]
    np.testing.assert_allclose(history["train_val_gap"], gap)
    trained = tiny_data[0][:300], tiny_data[1][:300]  # all 300 of the training part
    final = net.predict(trained[0], verbose=0)
    assert history["train_sample_accuracy"].iloc[-1] == np.mean(final.argmax(axis=1) == trained[1])
    assert history["train_sample_loss"].iloc[-1] == pytest.approx(
        model.cross_entropy(final, trained[1]), rel=1e-5
    )
    # Wall times and the learning rate go to MLflow, not into the history, which the same
    # inputs make the same.
    assert all(values["epoch_time_s"] > 0 for _, values in seen)
    assert [values["learning_rate"] for _, values in seen] == [tiny_cfg.train.learning_rate] * 3
    assert "epoch_time_s" not in history and "learning_rate" not in history
    # One log line an epoch, in Keras' place (verbose=0: its own is off).
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3 and lines[-1].startswith("epoch 3/3 in ")
    assert f"validation {100 * history['val_accuracy'].iloc[-1]:.2f}%" in lines[-1]


def test_without_a_train_sample_the_gap_is_keras_running_mean(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, train_sample=0))
    _, history = engine.train(cfg, *tiny_data, verbose=0)
    assert "train_sample_accuracy" not in history
    np.testing.assert_allclose(
        history["train_val_gap"], history["accuracy"] - history["val_accuracy"]
    )


def test_early_stopping_stops_and_keeps_the_best_epochs_weights(tiny_cfg, tiny_data):
    # min_delta 0.5: after the first epoch nothing counts as an improvement.
    stopping = config.EarlyStoppingConfig(True, config.Monitor.val_loss, 1, 0.5)
    cfg = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, epochs=30, early_stopping=stopping)
    )
    net, history = engine.train(cfg, *tiny_data, verbose=0)
    assert history["epoch"].tolist() == [1, 2]  # stopped after `patience` epochs
    assert history["weights_kept"].tolist() == [1, 0]
    one = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, epochs=1))
    first, _ = engine.train(one, *tiny_data, verbose=0)
    assert provenance.weights_digest(net.get_weights()) == provenance.weights_digest(
        first.get_weights()
    )


def test_validation_split_zero_trains_on_everything_like_the_notebook(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, validation_split=0.0)
    )
    _, history = engine.train(cfg, *tiny_data, verbose=0)
    assert "val_accuracy" not in history and "train_val_gap" not in history
    assert history["accuracy"].iloc[-1] > 0.9


def test_sparse_labels_train_as_well(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(
        tiny_cfg,
        train=dataclasses.replace(tiny_cfg.train, loss=Loss.sparse_categorical_crossentropy),
    )
    net, history = engine.train(cfg, *tiny_data, verbose=0)
    assert net.loss == Loss.sparse_categorical_crossentropy.value, "train.loss was not used"
    assert history["val_accuracy"].iloc[-1] > 0.9


def test_same_seed_same_weights(tiny_cfg, tiny_data):
    first, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    second, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps", [4, 19])  # 19: all of an epoch's batches in one call
def test_steps_per_execution_changes_the_speed_not_the_model(tiny_cfg, tiny_data, steps):
    one_at_a_time = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps_per_execution=1)
    )
    grouped = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps_per_execution=steps)
    )
    first, first_history = engine.train(one_at_a_time, *tiny_data, verbose=0)
    second, second_history = engine.train(grouped, *tiny_data, verbose=0)
    assert second.steps_per_execution == steps
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    columns = ["accuracy", "loss", "val_accuracy", "val_loss"]
    np.testing.assert_allclose(first_history[columns], second_history[columns], rtol=1e-5)


@pytest.mark.parametrize(
    "monitor, patience, min_delta",
    [("val_loss", 2, 0.001), ("val_loss", 3, 0.01), ("val_accuracy", 2, 0.0)],
)
def test_early_stopping_stops_and_restores_as_keras_own_does(monitor, patience, min_delta):
    """Ours is written on the public Callback API (to go on from a checkpoint); it must stop at
    the same epoch and end with the same weights as Keras' EarlyStopping."""
    cfg = config.validate(
        config.compose(["model.hidden_units=16", "train.learning_rate=0.01"]), "small config"
    )
    x, y = synthetic_digits(600)
    ours = callbacks.EarlyStopping(
        config.EarlyStoppingConfig(True, config.Monitor(monitor), patience, min_delta)
    )
    keras_own = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience, min_delta=min_delta, restore_best_weights=True
    )
    ended = []
    for stopper in (ours, keras_own):
        engine.fresh_start(1)
        net = model.build(cfg.model, cfg.train)
        fit = net.fit(
            x,
            model.targets(y, cfg.train.loss),
            epochs=25,
            batch_size=32,
            validation_split=0.2,
            callbacks=[stopper],
            verbose=0,
        )
        ended.append((len(fit.history["loss"]), provenance.weights_digest(net.get_weights())))
    assert ended[0] == ended[1]
    assert ended[0][0] < 25, "this case should stop early"
