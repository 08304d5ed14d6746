"""Stage 3: train the network, save it as `.keras`, and record every epoch.

A thin layer over the training engine (`pipeline.engine`): `run(cfg, paths)` reads the
prepared arrays, trains through the engine with the checkpoint cache, writes the model, the
history CSV (a DVC plot) and the environment it ran in, and records them in the open MLflow
run with the weights' digest, then logs and registers the model. `main()` opens a new run for
it, which evaluate later adds to; a sweep job (`pipeline.sweep`) opens a child run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import pandas as pd

from pipeline import (
    checkpoints,
    config,
    engine,
    entry,
    files,
    model,
    overfitting,
    preprocess,
    provenance,
)
from pipeline.tracking import names, record, registry, runs, store

log = logging.getLogger(__name__)


def run(cfg: config.Config, paths: config.PathsConfig) -> tuple[keras.Model, pd.DataFrame, str]:
    """In the open MLflow run: log the config, the data and the environment, train, write the
    model, its history and the environment to `paths`, log them with the weights' digest;
    return the model, its history and its `models:/` URI."""
    prepared = Path(paths.prepared)
    x, y = preprocess.load_split(prepared, "train")
    meta = preprocess.read_meta(prepared)
    record.configuration(cfg)
    facts = provenance.environment()
    record.environment(facts)
    record.data(x, y, meta, source=str(prepared), context="training")
    cache = checkpoints.Cache.of(cfg.checkpoints)
    saved_in = cache.training(checkpoints.key(cfg, meta["fingerprint"], facts)) if cache else None
    trained = model.training_part(len(x), cfg.train.validation_split)
    log.info(
        "training %d epochs of batch %d on %d digits, validating on %d",
        cfg.train.epochs,
        cfg.train.batch_size,
        trained,
        len(x) - trained,
    )
    net, history = engine.train(cfg, x, y, on_epoch=record.epoch, saved_in=saved_in)
    started = {names.CHECKPOINT_FROM: str(saved_in.started_from) if saved_in else "off"}
    record.tags(started | ({names.CHECKPOINT_KEY: saved_in.key} if saved_in else {}))
    if cfg.train.early_stopping.enabled:
        kept = int(overfitting.kept(history)["epoch"])
        log.info("early stopping: trained %d epochs, kept epoch %d's weights", len(history), kept)
    record.weights(provenance.weights_digest(net.get_weights()))
    model.save(net, Path(paths.model))
    files.write_text(Path(paths.history), history.to_csv(index=False))
    files.write_text(Path(paths.environment), json.dumps(facts, indent=2) + "\n")
    record.artifacts([Path(paths.history)])
    return net, history, register(cfg, net, history)


def register(cfg: config.Config, net: keras.Model, history: pd.DataFrame) -> str:
    """Log the model in the open run and register it, @champion if it wins; its URI."""
    model_uri = registry.log_model(net)
    final = overfitting.kept(history)
    val_accuracy = float(final["val_accuracy"]) if "val_accuracy" in final else None
    log.info(
        "final training accuracy %.2f%%%s",
        100 * final["accuracy"],
        "" if val_accuracy is None else f", validation {100 * val_accuracy:.2f}%",
    )
    name = cfg.tracking.registered_model
    version, champion = registry.register(name, model_uri, val_accuracy)
    if champion:
        verdict = f"now @{registry.CHAMPION}"
    elif val_accuracy is None:
        verdict = "no validation accuracy, so never the champion"
    else:
        verdict = f"@{registry.CHAMPION} stays on a version at least as good on validation"
    log.info("registered as %s version %d: %s", name, version, verdict)
    return model_uri


def write_record(path: Path, run_id: str, model_uri: str) -> None:
    """The run's id and model URI, for people to find a sweep job's run from its folder."""
    record = {"run_id": run_id, "model_uri": model_uri, "tracking_uri": store.uri()}
    files.write_text(path, json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    entry.parser("pipeline.train", __doc__).parse_args(argv)
    cfg = config.load()
    # No file links the outputs to the run: they would differ on every run. Evaluate finds
    # the run by the weights' digest.
    with runs.start(cfg.tracking.experiment, tags={names.STAGE: "train"}) as run_id:
        log.info("MLflow run %s", run_id)
        run(cfg, cfg.paths)


if __name__ == "__main__":
    entry.run(main)
