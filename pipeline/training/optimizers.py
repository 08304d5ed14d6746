"""The optimizer, its learning-rate schedule and the loss, from the training's config.

At the notebook's values (rmsprop, a constant rate, no momentum, weight decay or label
smoothing) they are built exactly as the notebook builds them, so its training keeps its
bits; each knob set adds only what it needs."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from pipeline.config import Loss, Optimizer, Schedule, TrainConfig

_CLASSES = {
    Optimizer.rmsprop: keras.optimizers.RMSprop,
    Optimizer.adam: keras.optimizers.Adam,
    Optimizer.adamw: keras.optimizers.AdamW,
    Optimizer.sgd: keras.optimizers.SGD,
}
# Values an optimizer keeps per weight (the memory check): RMSprop its mean of squared
# gradients, Adam and AdamW two moments, SGD none; momentum adds one to SGD's and RMSprop's.
_STATE = {Optimizer.rmsprop: 1, Optimizer.adam: 2, Optimizer.adamw: 2, Optimizer.sgd: 0}


@keras.saving.register_keras_serializable(package="pipeline")
class Scheduled(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then `kind`: constant, cosine to 0 over
    `decay_steps` (then 0), or exponential (times `decay_rate` every `decay_steps`)."""

    def __init__(
        self, rate: float, kind: str, warmup_steps: int, decay_steps: float, decay_rate: float
    ) -> None:
        self.rate, self.kind, self.warmup_steps = rate, kind, warmup_steps
        self.decay_steps, self.decay_rate = decay_steps, decay_rate

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        after = ops.maximum(step - self.warmup_steps, 0.0) / self.decay_steps
        if self.kind == Schedule.cosine.value:
            value = self.rate * 0.5 * (1.0 + ops.cos(math.pi * ops.minimum(after, 1.0)))
        elif self.kind == Schedule.exponential.value:
            value = self.rate * ops.power(self.decay_rate, after)
        else:
            value = self.rate * ops.ones_like(step)
        if not self.warmup_steps:
            return value
        return ops.where(
            step < self.warmup_steps, self.rate * (step + 1) / self.warmup_steps, value
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
        }


def learning_rate(cfg: TrainConfig, steps_per_epoch: int) -> float | Scheduled:
    """The rate, or its schedule in optimizer steps (epochs x `steps_per_epoch`)."""
    if cfg.schedule is Schedule.constant and not cfg.warmup_epochs:
        return cfg.learning_rate
    return Scheduled(
        cfg.learning_rate,
        cfg.schedule.value,
        cfg.warmup_epochs * steps_per_epoch,
        cfg.decay_epochs * steps_per_epoch,
        cfg.decay_rate,
    )


def optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer; momentum and weight decay passed only where set (AdamW's
    always: it has its own default)."""
    extra: dict[str, float] = {"momentum": cfg.momentum} if cfg.momentum else {}
    if cfg.weight_decay or cfg.optimizer is Optimizer.adamw:
        extra["weight_decay"] = cfg.weight_decay
    return _CLASSES[cfg.optimizer](learning_rate(cfg, steps_per_epoch), **extra)


def state_per_weight(cfg: TrainConfig) -> int:
    """How many values the optimizer keeps per weight."""
    return _STATE[cfg.optimizer] + (1 if cfg.momentum else 0)


def loss(cfg: TrainConfig) -> str | keras.losses.Loss:
    """The loss by its name, as the notebook gives it; an object where labels are smoothed."""
    if cfg.label_smoothing and cfg.loss is Loss.categorical_crossentropy:
        return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    return cfg.loss.value
