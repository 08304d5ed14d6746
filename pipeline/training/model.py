"""The network of `model.family`, built from config and compiled as the notebook compiles it;
saved and loaded. Imports Keras; download/preprocess never do."""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from pathlib import Path

import keras
import numpy as np

from pipeline import PipelineError
from pipeline.common import files, project
from pipeline.common.mnist import INPUT_DIM, NUM_CLASSES
from pipeline.config import ConfigError, Loss, ModelConfig, TrainConfig
from pipeline.training import internals, optimizers
from pipeline.training.families import FAMILIES

# Digits a predict step takes (evaluate, the registry's validation, rebuild): the same batch,
# so that the same weights give the same labels wherever they are asked.
PREDICT_BATCH = 1024


class ModelError(PipelineError):
    """A saved model is missing, truncated or not a Keras model."""


class TooLargeError(ConfigError):
    """The model configured would need more memory to train than the machine has free."""


# Training holds, per parameter, float32 copies of: the weights, their gradients, and the
# optimizer's state (`optimizers.state_per_weight`). Keras on JAX donates the old state to
# each step, so no further copy is counted. Per digit of a batch: what its family says
# (`per_digit`). A floor, not a ceiling (XLA's temporaries, the data, the process itself
# come on top; at 100,000 hidden units of the dense family it says 1.1 GB, where the peak
# memory grew by 1.4 GB): a model refused here cannot train, one just under it may still
# run out.
_MOST_IN_A_BATCH = 60_000  # MNIST's training digits: a larger batch_size makes no larger batch
_FLOAT32 = 4  # bytes


def parameters(model_cfg: ModelConfig) -> int:
    """The model's weights and biases, as its family counts them."""
    return FAMILIES[model_cfg.family].parameters(model_cfg)


def _copies(train_cfg: TrainConfig) -> int:
    """Per parameter: the weight, its gradient and the optimizer's state."""
    return 2 + optimizers.state_per_weight(train_cfg)


def training_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """About how much memory training the model takes (see above)."""
    weights = parameters(model_cfg) * _copies(train_cfg)
    per_digit = FAMILIES[model_cfg.family].per_digit(model_cfg)
    batch = min(train_cfg.batch_size, _MOST_IN_A_BATCH) * per_digit
    return (weights + batch) * _FLOAT32


def free_memory() -> int | None:
    """Bytes the machine can give without swapping: MemAvailable (Linux), else the free pages
    (fewer: the page cache is not counted); None where neither can be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not a name this system knows (macOS)
        return None


def _size(count: float) -> str:
    """21.3 GB, 1.1 TB: bytes in powers of 1000, as `free -H` and `df -H` give them."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def check_fits(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """A TooLargeError, before anything is allocated, for a model whose training cannot fit
    in the free memory: XLA would fail with dozens of lines, or the kernel kill the process."""
    needed, free = training_bytes(model_cfg, train_cfg), free_memory()
    if free is None or needed <= free:
        return
    count = parameters(model_cfg)
    weights = count * _copies(train_cfg) * _FLOAT32
    batch = "" if weights >= needed - weights else " or a smaller train.batch_size"
    raise TooLargeError(
        f"model={model_cfg.family} ({_settings(model_cfg)}) needs about {_size(needed)} to "
        f"train ({count:,} parameters, batches of {train_cfg.batch_size}), more than the "
        f"{_size(free)} this machine has free: {FAMILIES[model_cfg.family].smaller}{batch}"
    )


def _settings(model_cfg: ModelConfig) -> str:
    """`model.hidden_units=512, model.activation=relu`: a family's own values, those set
    (a dropout of 0 drops nothing and says nothing)."""
    values = {k: v for k, v in dataclasses.asdict(model_cfg).items() if v != 0}
    values.pop("family")
    return ", ".join(
        f"model.{key}={getattr(value, 'value', value)}" for key, value in values.items()
    )


def build(model_cfg: ModelConfig, train_cfg: TrainConfig, steps_per_epoch: int = 1) -> keras.Model:
    """The family's network for the prepared digits (784 floats each), compiled as the
    notebook compiles it (plus `steps_per_execution`, which changes the speed, not the
    result; a schedule counts `steps_per_epoch`); a TooLargeError first for one whose
    training cannot fit in memory."""
    check_fits(model_cfg, train_cfg)
    model = FAMILIES[model_cfg.family].build(model_cfg, (INPUT_DIM,))
    model.compile(
        optimizer=optimizers.optimizer(train_cfg, steps_per_epoch),
        loss=optimizers.loss(train_cfg),
        metrics=["accuracy"],
        steps_per_execution=train_cfg.steps_per_execution,
    )
    return model


def training_part(samples: int, validation_split: float) -> int:
    """How many of `samples` Keras trains on: it validates on the rest, taken from the end."""
    return int(math.floor(samples * (1.0 - validation_split)))


def steps_per_epoch(samples: int, train_cfg: TrainConfig) -> int:
    """The optimizer's steps in an epoch of `samples` (validation's held out)."""
    return math.ceil(training_part(samples, train_cfg.validation_split) / train_cfg.batch_size)


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
        restamp(tmp, tmp)


def restamp(saved: Path, path: Path) -> None:
    """Write the `.keras` file Keras saved at `saved` to `path` as `save` writes it: the same
    bytes for the same model, whenever and by whichever process Keras saved it (a model
    logged to MLflow too: `train` restores a reused job's model file from it)."""
    with zipfile.ZipFile(saved) as zipped:
        entries = [(info, zipped.read(info)) for info in zipped.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, content in entries:
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            out.writestr(entry, internals.stable(info.filename, content))


def keep_compilations() -> None:
    """On JAX, keep XLA's compilations across processes in `<project root>/.jax-cache`, or
    where JAX_COMPILATION_CACHE_DIR says (`reproduce` points a rebuild at its project's): a
    training of the same shapes then skips compiling its first epoch, and a loaded model its
    build and predict steps (docs/performance.md). The same compiled code gives the same
    numbers. TensorFlow traces its steps in Python: nothing to keep."""
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", project.compilations())
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def load(path: Path) -> keras.Model:
    """Load a `.keras` file with Keras' safe mode on (no arbitrary code from the file), its
    compilations kept (`keep_compilations`)."""
    if not Path(path).is_file():
        raise ModelError(f"model file {path} does not exist; run `dvc repro train`")
    keep_compilations()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, TypeError) as err:
        raise ModelError(
            f"{path} is not a loadable Keras model ({type(err).__name__}: "
            f"{err}); rerun `dvc repro -f train` to rebuild it"
        ) from None
