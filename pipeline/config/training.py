"""The training's config: the notebook's knobs (epochs, batch size, rmsprop at 1e-3,
categorical cross-entropy) and those it lacks, each at the value that leaves the notebook's
training as it was: momentum, weight decay, label smoothing, a learning-rate schedule with
warm-up, early stopping. `problem()` names what no single value decides."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.config import bounds
from pipeline.config.bounds import Loss, Monitor, Optimizer, Schedule


@dataclass
class EarlyStoppingConfig:
    enabled: bool = MISSING
    monitor: Monitor = MISSING
    patience: int = bounds.at_least(1)
    min_delta: float = bounds.finite(0)


@dataclass
class TrainConfig:
    epochs: int = bounds.at_least(1)
    batch_size: int = bounds.at_least(1)
    optimizer: Optimizer = MISSING
    learning_rate: float = bounds.finite(0, above=True)
    momentum: float = bounds.bounded(*bounds.FRACTION)
    weight_decay: float = bounds.finite(0)
    label_smoothing: float = bounds.bounded(*bounds.FRACTION)
    schedule: Schedule = MISSING
    warmup_epochs: int = bounds.at_least(0)
    decay_epochs: float = bounds.finite(0, above=True)
    decay_rate: float = bounds.bounded("in (0, 1]", lambda value: 0 < value <= 1)
    loss: Loss = MISSING
    validation_split: float = bounds.bounded(*bounds.FRACTION)
    seed: int = bounds.at_least(0)
    steps_per_execution: int = bounds.at_least(1)
    train_sample: int = bounds.at_least(0)
    early_stopping: EarlyStoppingConfig = MISSING


def problem(cfg: TrainConfig) -> str | None:
    """A knob set where it does nothing, in words; None where all is well."""
    if cfg.momentum and cfg.optimizer not in (Optimizer.sgd, Optimizer.rmsprop):
        return (
            f"train.momentum={cfg.momentum} is for sgd and rmsprop; {cfg.optimizer.value} keeps "
            "its own moments: set train.momentum=0, or train.optimizer=sgd"
        )
    if cfg.label_smoothing and cfg.loss is Loss.sparse_categorical_crossentropy:
        return (
            f"train.label_smoothing={cfg.label_smoothing} needs one-hot labels: set "
            "train.loss=categorical_crossentropy, or train.label_smoothing=0"
        )
    return None
