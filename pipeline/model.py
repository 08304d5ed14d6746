"""The notebook's network, built from config. Imports Keras; download/preprocess never do."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import keras
import numpy as np

from pipeline import PipelineError, files, internals
from pipeline.config import Loss, ModelConfig, Optimizer, TrainConfig
from pipeline.mnist import INPUT_DIM, NUM_CLASSES

_OPTIMIZERS = {
    Optimizer.rmsprop: keras.optimizers.RMSprop,
    Optimizer.adam: keras.optimizers.Adam,
    Optimizer.sgd: keras.optimizers.SGD,
}


class ModelError(PipelineError):
    """A saved model is missing, truncated or not a Keras model."""


def build(model_cfg: ModelConfig, train_cfg: TrainConfig) -> keras.Model:
    """Dense(hidden, activation) -> Dense(10, softmax), compiled as the notebook compiles it
    (plus `steps_per_execution`, which changes the speed, not the result)."""
    model = keras.Sequential(
        [
            keras.Input((INPUT_DIM,)),
            keras.layers.Dense(model_cfg.hidden_units, activation=model_cfg.activation.value),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_dense",
    )
    model.compile(
        optimizer=_OPTIMIZERS[train_cfg.optimizer](train_cfg.learning_rate),
        loss=train_cfg.loss.value,
        metrics=["accuracy"],
        steps_per_execution=train_cfg.steps_per_execution,
    )
    return model


def training_part(samples: int, validation_split: float) -> int:
    """How many of `samples` Keras trains on: it validates on the rest, taken from the end."""
    return int(math.floor(samples * (1.0 - validation_split)))


def cross_entropy(proba: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean categorical cross-entropy of integer `labels`, clipped as Keras clips it."""
    picked = proba[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1 - eps))))


def targets(labels: np.ndarray, loss: Loss) -> np.ndarray:
    """Labels as the loss wants them: one-hot for categorical, integers for sparse."""
    if loss is Loss.categorical_crossentropy:
        return keras.utils.to_categorical(labels, NUM_CLASSES)
    return np.asarray(labels, dtype=np.int32)


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the date Keras gives every zip entry but the weights'


def save(net: keras.Model, path: Path) -> None:
    """Save as a `.keras` file, atomically, whose bytes depend on the model alone."""
    with files.replacing(Path(path), suffix=".keras") as tmp:
        net.save(tmp)
        with zipfile.ZipFile(tmp) as saved:
            entries = [(info, saved.read(info)) for info in saved.infolist()]
        with zipfile.ZipFile(tmp, "w") as out:
            for info, content in entries:
                entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
                entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
                out.writestr(entry, internals.stable(info.filename, content))


def load(path: Path) -> keras.Model:
    """Load a `.keras` file with Keras' safe mode on (no arbitrary code from the file)."""
    if not Path(path).is_file():
        raise ModelError(f"model file {path} does not exist; run `dvc repro train`")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, TypeError) as err:
        raise ModelError(
            f"{path} is not a loadable Keras model ({type(err).__name__}: "
            f"{err}); rerun `dvc repro -f train` to rebuild it"
        ) from None
