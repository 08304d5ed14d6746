"""pipeline/training/optimizers.py and the knobs the notebook lacks (dropout, momentum, weight
decay, label smoothing, a schedule with warm-up): each bad value is one line, the schedule
gives the rate it says at each epoch, a model with all of them set saves and loads, and a
longer training goes on from a shorter one to the same bits as from scratch."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest

from pipeline import config
from pipeline.common import provenance
from pipeline.training import checkpoints, engine, model, optimizers

KNOBS = [
    "model.input_dropout=0.1",
    "model.dropout=0.2",
    "train.optimizer=adamw",
    "train.weight_decay=0.01",
    "train.label_smoothing=0.1",
    "train.schedule=cosine",
    "train.warmup_epochs=1",
    "train.decay_epochs=3",
]


def _cfg(*overrides: str) -> config.Config:
    shrunk = ["model.hidden_units=16", "train.batch_size=16", "train.validation_split=0.25"]
    return config.validate(config.compose([*shrunk, *overrides]), "test")


@pytest.mark.parametrize(
    "override, said",
    [
        ("train.momentum=1", "train.momentum must be in [0, 1), got 1.0"),
        ("train.label_smoothing=-0.1", "train.label_smoothing must be in [0, 1), got -0.1"),
        ("train.decay_rate=0", "train.decay_rate must be in (0, 1], got 0.0"),
        ("train.decay_epochs=0", "train.decay_epochs must be a finite number > 0, got 0.0"),
        ("model.dropout=1", "model.dropout must be in [0, 1), got 1.0"),
        ("train.weight_decay=-1", "train.weight_decay must be a finite number >= 0, got -1.0"),
        ("train.schedule=linear", "train.schedule: Invalid value 'linear'"),
        ("train.optimizer=adagrad", "train.optimizer: Invalid value 'adagrad'"),
    ],
)
def test_a_bad_knob_is_one_line_naming_it(override, said):
    with pytest.raises(config.ConfigError, match=r"^.*$") as caught:
        config.compose([override])
    assert said in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides, said",
    [
        (
            ["train.optimizer=adam", "train.momentum=0.9"],
            "train.momentum=0.9 is for sgd and rmsprop",
        ),
        (
            ["train.loss=sparse_categorical_crossentropy", "train.label_smoothing=0.1"],
            "train.label_smoothing=0.1 needs one-hot labels",
        ),
    ],
)
def test_a_knob_that_would_do_nothing_is_refused(overrides, said):
    with pytest.raises(config.ConfigError, match=said):
        config.compose(overrides)


def test_the_schedule_warms_up_then_decays_as_said():
    cosine = optimizers.Scheduled(1.0, "cosine", warmup_steps=2, decay_steps=4, decay_rate=0.5)
    rates = [float(cosine(step)) for step in range(8)]
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)] + [0, 0]
    assert rates == pytest.approx(expected, abs=1e-6)
    exponential = optimizers.Scheduled(1.0, "exponential", 0, decay_steps=2, decay_rate=0.5)
    assert [float(exponential(s)) for s in (0, 2, 4)] == pytest.approx([1.0, 0.5, 0.25])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cosine))
    assert again.get_config() == cosine.get_config()


def test_the_rate_each_epoch_ends_with_follows_the_schedule(tiny_data):
    cfg = _cfg("train.epochs=3", "train.schedule=exponential", "train.decay_epochs=1")
    rates: list[float] = []
    engine.train(cfg, *tiny_data, on_epoch=lambda _, values: rates.append(values["learning_rate"]))
    assert rates == pytest.approx([5e-4, 2.5e-4, 1.25e-4], rel=1e-5)  # the rate x 0.5 an epoch


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "adamw", "sgd"])
def test_every_optimizer_learns_and_momentum_counts_in_the_memory(optimizer, tiny_data):
    momentum = ["train.momentum=0.9"] if optimizer in ("sgd", "rmsprop") else []
    cfg = _cfg("train.epochs=2", f"train.optimizer={optimizer}", *momentum)
    net, history = engine.train(cfg, *tiny_data)
    assert type(net.optimizer).__name__.lower() == optimizer
    assert history["loss"].iloc[-1] < history["loss"].iloc[0], "it learned nothing"
    plain = dataclasses.replace(cfg.train, momentum=0.0)
    more = model.training_bytes(cfg.model, cfg.train) - model.training_bytes(cfg.model, plain)
    assert more == (4 * model.parameters(cfg.model) if momentum else 0)


def test_all_knobs_set_the_model_saves_loads_and_predicts_the_same(tiny_data, tmp_path):
    cfg = _cfg("train.epochs=2", *KNOBS)
    net, _ = engine.train(cfg, *tiny_data)
    names = [type(layer).__name__ for layer in net.layers]
    assert names == ["Dropout", "Dense", "Dropout", "Dense"]
    model.save(net, tmp_path / "model.keras")
    loaded = model.load(tmp_path / "model.keras")
    x = tiny_data[0][:50]
    assert np.array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


def test_all_knobs_set_a_longer_training_goes_on_from_a_shorter_one_bit_for_bit(
    tiny_data, tmp_path
):
    four = _cfg("train.epochs=4", *KNOBS)
    scratch, history = engine.train(four, *tiny_data)
    cache = checkpoints.Cache(tmp_path / "checkpoints", 2**30)
    saved_in = cache.training(checkpoints.key(four, "f" * 64, {"cpus": "2"}))
    engine.train(
        dataclasses.replace(four, train=dataclasses.replace(four.train, epochs=2)),
        *tiny_data,
        saved_in=saved_in,
    )
    resumed, resumed_history = engine.train(four, *tiny_data, saved_in=saved_in)
    assert saved_in.started_from == 2
    digest = provenance.weights_digest
    assert digest(resumed.get_weights()) == digest(scratch.get_weights())
    assert resumed_history.equals(history), "the history differs"
