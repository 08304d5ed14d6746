"""The notebook's network: Dense(hidden_units, activation) -> Dense(10, softmax)."""

from __future__ import annotations

import keras

from pipeline.common.mnist import INPUT_DIM, NUM_CLASSES
from pipeline.config.models import DenseConfig

SMALLER = "choose fewer hidden units (model.hidden_units)"


def parameters(cfg: DenseConfig) -> int:
    """The weights and biases of Dense(784 -> hidden) and Dense(hidden -> 10)."""
    return (INPUT_DIM + 1) * cfg.hidden_units + (cfg.hidden_units + 1) * NUM_CLASSES


def per_digit(cfg: DenseConfig) -> int:
    """The input, the hidden layer before and after its activation (kept for the backward
    pass) and its gradient, and the output's three."""
    return INPUT_DIM + 3 * cfg.hidden_units + 3 * NUM_CLASSES


def build(cfg: DenseConfig, input_shape: tuple[int, ...]) -> keras.Model:
    """Dense(hidden_units, activation) -> Dense(10, softmax), as the notebook builds it;
    a Dropout layer only where a rate is set (none at 0: the notebook's model, its bits)."""
    layers = [
        keras.Input(input_shape),
        *_dropout(cfg.input_dropout),
        keras.layers.Dense(cfg.hidden_units, activation=cfg.activation.value),
        *_dropout(cfg.dropout),
        keras.layers.Dense(NUM_CLASSES, activation="softmax"),
    ]
    return keras.Sequential(layers, name="mnist_dense")


def _dropout(rate: float) -> list[keras.layers.Layer]:
    """A Dropout layer of `rate`, where it drops anything."""
    return [keras.layers.Dropout(rate)] if rate else []
