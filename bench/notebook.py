"""The notebook's own code (Chollet, ch. 2), as a script: the baseline the benchmark measures
the pipeline against. No tracking, no validation split, nothing of ours. On Keras' default
backend, TensorFlow, or another one: `KERAS_BACKEND=jax python bench/notebook.py ...`.

    python bench/notebook.py MNIST_NPZ [--epochs 5] [--batch-size 128]

Prints one JSON line: seconds per epoch, test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def run(npz: str, epochs: int = 5, batch_size: int = 128) -> dict:
    with np.load(npz) as mnist:  # what mnist.load_data() reads from its cache
        train_images, train_labels = mnist["x_train"], mnist["y_train"]
        test_images, test_labels = mnist["x_test"], mnist["y_test"]
    model = keras.models.Sequential()
    model.add(keras.Input(shape=(28 * 28,)))
    model.add(keras.layers.Dense(units=512, activation="relu"))
    model.add(keras.layers.Dense(units=10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    train_images = train_images.reshape(60000, 28 * 28).astype("float32") / 255
    test_images = test_images.reshape(10000, 28 * 28).astype("float32") / 255
    train_labels = keras.utils.to_categorical(train_labels)
    test_labels = keras.utils.to_categorical(test_labels)
    timer = EpochTimes()
    model.fit(
        train_images,
        train_labels,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[timer],
        verbose=0,
    )
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    return {
        "epoch_s": timer.times,
        "test_accuracy": float(test_acc),
        "train_samples": len(train_images),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("npz")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(json.dumps(run(args.npz, args.epochs, args.batch_size)))  # noqa: T201
