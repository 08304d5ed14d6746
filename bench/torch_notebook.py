"""The notebook's model in plain PyTorch, the framework a user would most often pick instead:
Linear(784, 512) -> ReLU -> Linear(512, 10), RMSprop as Keras sets it (rate 0.001, rho 0.9,
epsilon 1e-7), cross-entropy, 5 epochs of 128 shuffled digits scaled to [0, 1]. A peer in the
benchmark (`pip install -e '.[bench]'`), no tracking.

    python bench/torch_notebook.py MNIST_NPZ [--epochs 5] [--batch-size 128]

Prints one JSON line: seconds per epoch, test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


def run(npz: str, epochs: int = 5, batch_size: int = 128) -> dict:
    torch.manual_seed(42)
    with np.load(npz) as mnist:
        x_train = torch.from_numpy(mnist["x_train"].reshape(60000, 784).astype("float32") / 255)
        y_train = torch.from_numpy(mnist["y_train"].astype("int64"))
        x_test = torch.from_numpy(mnist["x_test"].reshape(10000, 784).astype("float32") / 255)
        y_test = torch.from_numpy(mnist["y_test"].astype("int64"))
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    loss_of = nn.CrossEntropyLoss()  # softmax and categorical cross-entropy in one
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x_train))
        for batch in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_of(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return {"epoch_s": times, "test_accuracy": accuracy, "train_samples": len(x_train)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("npz")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(json.dumps(run(args.npz, args.epochs, args.batch_size)))  # noqa: T201
