"""The pipeline's train step (`pipeline.train.train`, no tracking) on the prepared arrays of the
project it runs in, as the benchmark times it beside `bench/notebook.py`.

    python bench/train_step.py      (from the project root, after `dvc repro preprocess`)

Prints one JSON line: seconds per epoch, test accuracy, samples trained on per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import config, preprocess, train


def run() -> dict:
    cfg = config.load()
    prepared = Path(cfg.paths.prepared)
    x, y = preprocess.load_split(prepared, "train")
    seconds: list[float] = []  # each epoch's wall time, which the history leaves out
    net, _ = train.train(
        cfg, x, y, on_epoch=lambda _, values: seconds.append(values["epoch_time_s"]), verbose=0
    )
    x_test, y_test = preprocess.load_split(prepared, "test")
    accuracy = float((net.predict(x_test, verbose=0).argmax(axis=1) == y_test).mean())
    return {
        "epoch_s": seconds,
        "test_accuracy": accuracy,
        "train_samples": int(len(x) * (1 - cfg.train.validation_split)),
    }


if __name__ == "__main__":
    print(json.dumps(run()))  # noqa: T201
