"""pipeline/model.py: the notebook's network, its targets, and loading a saved model, a
missing one or a damaged one; on tiny synthetic digits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline import config, engine, model
from pipeline.config import Loss

from .helpers.stage import Stage


def test_build_is_the_notebooks_network():
    net = model.build(config.defaults().model, config.defaults().train)
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


def test_saved_model_loads_back_and_predicts_the_same(tiny_cfg, tiny_data, tmp_path):
    net, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    net.save(tmp_path / "model.keras")
    loaded = model.load(tmp_path / "model.keras")
    x = tiny_data[0][:5]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


def test_the_same_model_saves_to_the_same_bytes(tiny_cfg, tiny_data, tmp_path):
    """Keras stamps each save with its time and memory addresses; model.save does not."""
    first, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    second, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    model.save(first, tmp_path / "first.keras")
    model.save(second, tmp_path / "second.keras")
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    loaded = model.load(tmp_path / "second.keras")
    for a, b in zip(loaded.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations.numpy() == first.optimizer.iterations.numpy()


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


@pytest.mark.e2e  # train, then evaluate and predict, as DVC runs them: slow (20 s)
def test_a_damaged_model_given_to_evaluate_or_predict_is_named_as_damaged(tmp_path):
    stage = Stage(tmp_path, "train.epochs=1")
    assert stage.run("train").returncode == 0
    damaged = tmp_path / "models" / "model.keras"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # truncated
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), dtype=np.float32))

    evaluated = stage.run("evaluate")
    predicted = stage.run("predict", str(digit), "--model", str(damaged))

    for done in (evaluated, predicted):
        assert done.returncode == 1
        assert "models/model.keras is not a loadable Keras model" in done.stderr
        assert "No such file" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "reports" / "metrics.json").exists()
