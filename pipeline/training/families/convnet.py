"""Chollet's small convnet (Deep Learning with Python, ch. 5): for each of `model.filters`,
Conv2D(kernel_size, activation) then max-pooling; then Dense(10, softmax)."""

from __future__ import annotations

import keras

from pipeline.common.mnist import NUM_CLASSES, SIDE
from pipeline.config.models import ConvnetConfig

INPUT_SHAPE = (SIDE, SIDE, 1)  # a digit as a picture of one channel
SMALLER = "choose fewer or smaller filters (model.filters)"


def parameters(cfg: ConvnetConfig) -> int:
    """Each convolution's kernels and biases, then Dense(flattened -> 10)'s."""
    total, channels = 0, INPUT_SHAPE[2]
    for filters in cfg.filters:
        total += (cfg.kernel_size**2 * channels + 1) * filters
        channels = filters
    return total + (cfg.sides()[-1] ** 2 * channels + 1) * NUM_CLASSES


def per_digit(cfg: ConvnetConfig) -> int:
    """The input; each convolution's output before and after its activation and its
    gradient; each pooling's output and its gradient; the output's three."""
    total, side = SIDE * SIDE, SIDE
    for filters, pooled in zip(cfg.filters, cfg.sides(), strict=True):
        side = side - cfg.kernel_size + 1
        total += 3 * side * side * filters + 2 * pooled * pooled * filters
        side = pooled
    return total + 3 * NUM_CLASSES


def build(cfg: ConvnetConfig, input_shape: tuple[int, ...]) -> keras.Model:
    """The convnet, taking digits of `input_shape` (the prepared arrays' 784 floats are
    reshaped to its 28x28x1 inside the model, so predict and the registry feed it as any)."""
    layers: list = [keras.Input(input_shape)]
    if tuple(input_shape) != INPUT_SHAPE:
        layers.append(keras.layers.Reshape(INPUT_SHAPE))
    for filters in cfg.filters:
        layers.append(
            keras.layers.Conv2D(filters, cfg.kernel_size, activation=cfg.activation.value)
        )
        layers.append(keras.layers.MaxPooling2D(cfg.pool_size))
    layers.append(keras.layers.Flatten())
    if cfg.dropout:
        layers.append(keras.layers.Dropout(cfg.dropout))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name="mnist_convnet")
