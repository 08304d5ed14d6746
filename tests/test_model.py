"""pipeline/training/model.py: the notebook's network, its targets, and loading a saved model, a
missing one or a damaged one; on tiny synthetic digits."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from pipeline import config
from pipeline.config import Loss, models
from pipeline.training import engine, families, model

from .helpers.stage import Stage


def test_build_is_the_notebooks_network():
    net = model.build(config.from_conf().model, config.from_conf().train)
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


def test_a_loaded_model_keeps_its_compilations_for_the_next_process(tiny_cfg, tiny_data, tmp_path):
    """evaluate and predict load a model in a process of their own: what XLA compiles for it
    is kept, as training's is, and the next such process compiles nothing anew."""
    x, y = tiny_data
    net, _ = engine.train(tiny_cfg, x, y)
    model.save(net, tmp_path / "model.keras")
    np.save(tmp_path / "digits.npy", x[:8])
    predict = (
        "import sys, numpy as np; from pathlib import Path; from pipeline.training import model; "
        "net = model.load(Path(sys.argv[1])); "
        "print(net.predict(np.load(sys.argv[2]), verbose=0).argmax(axis=1).tolist())"
    )
    cache = tmp_path / "compilations"
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": str(cache)}
    command = [
        sys.executable,
        "-c",
        predict,
        str(tmp_path / "model.keras"),
        str(tmp_path / "digits.npy"),
    ]

    def run() -> tuple[str, list[str]]:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return done.stdout, sorted(p.name for p in cache.iterdir())

    (first, kept), (second, after) = run(), run()
    assert kept, "a loaded model's compilations were not kept"
    assert second == first and after == kept


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


def _config(*overrides: str) -> config.Config:
    return config.validate(config.compose(list(overrides)), "test")


def test_the_parameters_counted_are_the_models():
    cfg = _config("model.hidden_units=16")
    assert model.parameters(cfg.model) == model.build(cfg.model, cfg.train).count_params()
    convnet = _config("model=convnet", "model.filters=[4,8]")
    assert model.parameters(convnet.model) == 4 * 10 + 8 * 37 + 5 * 5 * 8 * 10 + 10
    assert model.parameters(convnet.model) == model.build(convnet.model, cfg.train).count_params()


def test_a_model_too_large_for_the_free_memory_is_refused_before_keras_builds_it(monkeypatch):
    monkeypatch.setattr(model, "free_memory", lambda: 21_300_000_000)
    monkeypatch.setattr(keras, "Sequential", None)  # nothing of Keras is reached
    cfg = _config("model.hidden_units=100000000")
    with pytest.raises(model.TooLargeError) as caught:
        model.build(cfg.model, cfg.train)
    assert str(caught.value) == (
        "model=dense (model.hidden_units=100000000, model.activation=relu) needs about 1.1 TB "
        "to train (79,500,000,010 parameters, batches of 128), more than the 21.3 GB this "
        "machine has free: choose fewer hidden units (model.hidden_units)"
    )
    assert isinstance(caught.value, config.ConfigError)  # one line, exit 1 (entry.run)


def test_the_estimate_is_weights_gradients_optimizer_state_and_a_batch():
    """RMSprop keeps one value per weight, Adam two, SGD (no momentum) none; a batch holds
    the input, the hidden layer twice and its gradient, and the output's three per digit."""
    per_digit = 784 + 3 * 1000 + 30
    for optimizer, copies in (("rmsprop", 3), ("adam", 4), ("sgd", 2)):
        cfg = _config("model.hidden_units=1000", f"train.optimizer={optimizer}")
        expected = 4 * (model.parameters(cfg.model) * copies + 128 * per_digit)
        assert model.training_bytes(cfg.model, cfg.train) == expected, optimizer
    huge_batch = _config("model.hidden_units=1000", "train.batch_size=10000000")
    assert model.training_bytes(huge_batch.model, huge_batch.train) == 4 * (
        model.parameters(huge_batch.model) * 3 + 60_000 * per_digit
    ), "a batch is never larger than MNIST's training digits"


def test_when_the_batch_is_what_does_not_fit_the_line_says_so_too(monkeypatch):
    monkeypatch.setattr(model, "free_memory", lambda: 10_000_000_000)
    cfg = _config("model.hidden_units=100000", "train.batch_size=60000")
    with pytest.raises(model.TooLargeError) as caught:
        model.check_fits(cfg.model, cfg.train)
    assert str(caught.value) == (
        "model=dense (model.hidden_units=100000, model.activation=relu) needs about 73.1 GB "
        "to train (79,500,010 parameters, batches of 60000), more than the 10.0 GB this machine "
        "has free: choose fewer hidden units (model.hidden_units) or a smaller train.batch_size"
    )
    wide = _config("model=convnet", "model.filters=[100000]")
    with pytest.raises(model.TooLargeError) as caught:
        model.check_fits(wide.model, wide.train)
    assert str(caught.value).startswith("model=convnet (model.filters=[100000], ")
    assert ": choose fewer or smaller filters (model.filters)" in str(caught.value)


def test_the_default_model_fits_in_the_free_memory_here_and_small_machines():
    cfg = config.from_conf()
    free = model.free_memory()
    assert free is not None and free > 100_000_000, "MemAvailable not read"
    model.check_fits(cfg.model, cfg.train)
    assert model.training_bytes(cfg.model, cfg.train) < 10_000_000  # 6.1 MB: any machine


def test_free_memory_falls_back_to_sysconf_and_to_no_check(monkeypatch):
    """Without /proc/meminfo (macOS, BSD): the free pages; where even those cannot be read,
    no refusal: the model is built, as before this check."""
    real_open = builtins.open

    def no_meminfo(path, *args, **kwargs):
        if str(path) == "/proc/meminfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_meminfo)
    monkeypatch.setattr(os, "sysconf", {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}.get)
    assert model.free_memory() == 4_096_000

    def unknown(name):
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "sysconf", unknown)
    assert model.free_memory() is None
    cfg = _config("model.hidden_units=100000000")
    model.check_fits(cfg.model, cfg.train)


def test_every_family_has_a_config_a_builder_and_a_yaml():
    assert set(models.FAMILIES) == set(families.FAMILIES)
    for family in models.FAMILIES:
        cfg = _config(f"model={family}")
        assert cfg.model.family == family and isinstance(cfg.model, models.FAMILIES[family])
