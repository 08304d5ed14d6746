"""The pipeline's train step (`pipeline.training.engine.train`, no tracking) on the prepared arrays
of the project it runs in, as the benchmark times it beside `bench/notebook.py`.

    python bench/train_step.py [--checkpoints]   (from the project root, data prepared)

Prints one JSON line: seconds per epoch, test accuracy, samples trained on per epoch; with
`--checkpoints`, each epoch kept in a new, empty checkpoint cache, and the seconds each
checkpoint took to write (outside the epoch's own time).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import config, preprocess
from pipeline.common import entry, provenance
from pipeline.training import checkpoints, engine


class Timed(checkpoints.Training):
    """A training's checkpoints, each timed from its epoch's end (`epoch_ended`) to the end of
    its write: the engine takes the model's state (`engine.state`) before it calls `write`, and
    keeping a checkpoint costs both."""

    def __init__(self, cache: checkpoints.Cache, content: dict[str, Any]) -> None:
        super().__init__(cache, "timed", content)
        self.write_s: list[float] = []
        self.ended = time.perf_counter()

    def epoch_ended(self) -> None:
        """Called as the epoch's history row is handed on, before its checkpoint is taken."""
        self.ended = time.perf_counter()

    def write(self, epoch: int, rows: list[checkpoints.Row], weights: bytes, random: list) -> None:
        super().write(epoch, rows, weights, random)
        self.write_s.append(time.perf_counter() - self.ended)


def run(keep: bool = False) -> dict:
    entry.settle()  # as the train stage and a sweep's jobs do once their imports are done
    cfg = config.load()
    prepared = Path(cfg.paths.prepared)
    x, y = preprocess.load_split(prepared, "train")
    seconds: list[float] = []  # each epoch's wall time, which the history leaves out
    scratch = tempfile.TemporaryDirectory()
    saved_in = None
    if keep:
        content = checkpoints.key(cfg, "bench", provenance.environment())
        saved_in = Timed(checkpoints.Cache(Path(scratch.name), 2**40), content)

    def on_epoch(_: int, values: dict[str, float]) -> None:
        seconds.append(values["epoch_time_s"])
        if saved_in:
            saved_in.epoch_ended()

    net, _ = engine.train(cfg, x, y, on_epoch=on_epoch, verbose=0, saved_in=saved_in)
    scratch.cleanup()
    x_test, y_test = preprocess.load_split(prepared, "test")
    accuracy = float((net.predict(x_test, verbose=0).argmax(axis=1) == y_test).mean())
    return {
        "epoch_s": seconds,
        "test_accuracy": accuracy,
        "train_samples": int(len(x) * (1 - cfg.train.validation_split)),
        **({"write_s": saved_in.write_s} if saved_in else {}),
    }


if __name__ == "__main__":
    print(json.dumps(run(keep="--checkpoints" in sys.argv[1:])))  # noqa: T201
