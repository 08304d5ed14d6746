"""The network and its training loop, on tiny synthetic digits."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from pipeline import model, train
from pipeline.config import Config, Loss


def test_build_is_the_notebooks_network():
    net = model.build(Config().model, Config().train)
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [(512, "relu"), (10, "softmax")]
    assert net.input_shape == (None, 784)
    assert net.count_params() == 784 * 512 + 512 + 512 * 10 + 10
    assert isinstance(net.optimizer, keras.optimizers.RMSprop)
    assert float(net.optimizer.learning_rate) == pytest.approx(0.001)
    assert net.loss == "categorical_crossentropy"


def test_targets_follow_the_loss():
    labels = np.array([3, 0, 9], dtype=np.uint8)
    onehot = model.targets(labels, Loss.categorical_crossentropy)
    assert onehot.shape == (3, 10) and onehot.argmax(axis=1).tolist() == [3, 0, 9]
    assert model.targets(labels, Loss.sparse_categorical_crossentropy).tolist() == [3, 0, 9]


def test_train_learns_and_records_every_epoch(tiny_cfg, tiny_data):
    seen = []
    net, history = train.train(tiny_cfg, *tiny_data, on_epoch=lambda e, m: seen.append(e),
                               verbose=0)
    assert seen == [1, 2, 3]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["val_accuracy"].iloc[-1] > 0.9, "the model did not learn a trivial task"
    gap = history["accuracy"] - history["val_accuracy"]
    np.testing.assert_allclose(history["train_val_gap"], gap)
    assert (history["epoch_time_s"] > 0).all()


def test_validation_split_zero_trains_on_everything_like_the_notebook(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train,
                                                                  validation_split=0.0))
    _, history = train.train(cfg, *tiny_data, verbose=0)
    assert "val_accuracy" not in history and "train_val_gap" not in history
    assert history["accuracy"].iloc[-1] > 0.9


def test_sparse_labels_train_as_well(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(
        tiny_cfg.train, loss=Loss.sparse_categorical_crossentropy))
    _, history = train.train(cfg, *tiny_data, verbose=0)
    assert history["val_accuracy"].iloc[-1] > 0.9


def test_same_seed_same_weights(tiny_cfg, tiny_data):
    first, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    second, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps", [4, 19])  # 19: all of an epoch's batches in one call
def test_steps_per_execution_changes_the_speed_not_the_model(tiny_cfg, tiny_data, steps):
    one_at_a_time = dataclasses.replace(tiny_cfg, train=dataclasses.replace(
        tiny_cfg.train, steps_per_execution=1))
    grouped = dataclasses.replace(tiny_cfg, train=dataclasses.replace(
        tiny_cfg.train, steps_per_execution=steps))
    first, first_history = train.train(one_at_a_time, *tiny_data, verbose=0)
    second, second_history = train.train(grouped, *tiny_data, verbose=0)
    assert second.steps_per_execution == steps
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    columns = ["accuracy", "loss", "val_accuracy", "val_loss"]
    np.testing.assert_allclose(first_history[columns], second_history[columns], rtol=1e-5)


def test_saved_model_loads_back_and_predicts_the_same(tiny_cfg, tiny_data, tmp_path):
    net, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    net.save(tmp_path / "model.keras")
    loaded = model.load(tmp_path / "model.keras")
    x = tiny_data[0][:5]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


def test_missing_model_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(model.ModelError, match=r"model.keras does not exist.*dvc repro"):
        model.load(tmp_path / "model.keras")


@pytest.mark.parametrize("damage", ["truncate", "text"])
def test_damaged_model_file_is_a_clear_error(tiny_cfg, tiny_data, tmp_path, damage):
    path = tmp_path / "model.keras"
    if damage == "truncate":
        model.build(tiny_cfg.model, tiny_cfg.train).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_text("<html>not a model</html>")
    with pytest.raises(model.ModelError, match=f"{path} is not a loadable Keras model"):
        model.load(path)
