"""The notebook's network, built from config. Imports Keras; download/preprocess never do."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline import PipelineError, files
from pipeline.config import Loss, ModelConfig, Optimizer, TrainConfig

INPUT_DIM = 28 * 28
NUM_CLASSES = 10

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


# Keras stamps a `.keras` file with the time it was saved (`date_saved` in metadata.json, and
# the weights' zip entry's date), and numbers the objects its config shares by their memory
# addresses (`shared_object_id`); without those, the same model gives the same bytes.
METADATA, CONFIG = "metadata.json", "config.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SHARED = "shared_object_id"


def _renumbered(node: Any, numbers: dict[int, int]) -> Any:
    """`node` with each shared object's id replaced by its order of first appearance."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == SHARED
            else _renumbered(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumbered(item, numbers) for item in node]
    return node


def _stable(name: str, content: bytes) -> bytes:
    if name == METADATA:
        stamp = json.loads(content)
        stamp.pop("date_saved", None)
        return json.dumps(stamp).encode()
    if name == CONFIG:
        return json.dumps(_renumbered(json.loads(content), {})).encode()
    return content


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
                out.writestr(entry, _stable(info.filename, content))


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
