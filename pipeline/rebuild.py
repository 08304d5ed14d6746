"""Train once more from a recorded config and the raw data, with this checkout's code, and
write what came out: the weights' digest, the per-epoch history, the environment and the
label it predicts for each test digit.

`python -m pipeline.rebuild CONFIG RAW OUT`. `pipeline.reproduce` runs it in a worktree at a
run's commit, so the code that trains again is the code that trained the run; its arguments
and its JSON are the contract between the two: keys are only ever added (`test_predicted`
came later; `reproduce` reads a JSON without it and says what it could not test). No MLflow
here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pipeline import config, preprocess
from pipeline.analysis import overfitting
from pipeline.common import entry, files, provenance


def rebuild(cfg: config.Config, raw: Path) -> dict:
    """Prepare `raw` as the preprocess stage does, train as the train stage does, predict the
    test digits as evaluate does: where the bits differ from the run's, `reproduce` tests
    whether those predictions do."""
    from pipeline.training import engine, model

    prepared = preprocess.prepare(preprocess.load_npz(raw))
    net, history = engine.train(cfg, prepared["x_train"], prepared["y_train"])
    # as evaluate predicts: the same weights give the labels the run's predictions.csv holds
    proba = net.predict(prepared["x_test"], batch_size=model.PREDICT_BATCH, verbose=0)
    return {
        "weights_digest": provenance.weights_digest(net.get_weights()),
        "environment": provenance.environment(),
        # The metrics the run logged per epoch: which epoch's weights were kept is in the
        # weights' digest already.
        "history": history.drop(columns=[overfitting.KEPT]).to_dict(orient="records"),
        "test_predicted": proba.argmax(axis=1).tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.rebuild", description=__doc__)
    parser.add_argument("config", type=Path, help="a run's config.yaml")
    parser.add_argument("raw", type=Path, help="the raw MNIST .npz it was trained on")
    parser.add_argument("out", type=Path, help="where to write the result (JSON)")
    args = parser.parse_args(argv)
    cfg = config.validate(yaml.safe_load(args.config.read_text()), str(args.config))
    files.write_text(args.out, json.dumps(rebuild(cfg, args.raw), indent=1) + "\n")


if __name__ == "__main__":
    entry.run(main)
