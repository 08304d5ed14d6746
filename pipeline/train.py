"""Stage 3: train the network, save it as `.keras`, and record every epoch.

A thin layer over the training engine (`pipeline.training.engine`): `run(cfg, paths)` reads the
prepared arrays, trains through the engine with the checkpoint cache, writes the model, the history
CSV (a DVC plot) and the environment it ran in, and records them in the open MLflow run with the
weights' digest, then logs the model and registers it (`@champion` only on evidence:
`pipeline.tracking.promotion`). `main()` opens a new run for it, which evaluate later adds to (in
the DVC queue, a child of the queue's sweep: `tracking.queues`), or, for a job done before
(`pipeline.config.jobs`), writes the same outputs from that run (`restore`); a sweep job
(`pipeline.sweep`) opens a child run and registers nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import keras
import pandas as pd

from pipeline import config, preprocess
from pipeline.analysis import overfitting
from pipeline.common import entry, files, provenance
from pipeline.config import jobs
from pipeline.tracking import names, queues, record, registry, reuse, runs
from pipeline.training import checkpoints, engine, model

log = logging.getLogger(__name__)


def run(
    cfg: config.Config, paths: config.PathsConfig, register: bool = True
) -> tuple[keras.Model, pd.DataFrame, str]:
    """In the open MLflow run: log the config, the data and the environment, train, write the
    model, its history and the environment to `paths`, log them with the weights' digest and
    the model; register it (`register_version`) unless `register` is False (a sweep's jobs:
    the sweep registers one of them). Return the model, its history and its URI."""
    prepared = Path(paths.prepared)
    x, y = preprocess.load_split(prepared, "train")
    meta = preprocess.read_meta(prepared)
    record.configuration(cfg)
    facts = provenance.environment()
    record.environment(facts, job_key=jobs.key(cfg, meta["fingerprint"], facts))
    record.data(x, y, meta, source=str(prepared), context="training")
    cache = checkpoints.Cache.when_enabled(cfg.checkpoints)
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
    model_uri = registry.log_model(net, params=record.made_by(cfg))
    val_accuracy = _log_kept_accuracies(history, model_uri)
    if register:
        register_version(cfg, paths, net, model_uri, val_accuracy)
    return net, history, model_uri


def _log_kept_accuracies(history: pd.DataFrame, model_uri: str) -> float | None:
    """Log the kept epoch's training and validation accuracy; return the validation one,
    linked to the logged model too (MLflow 3's `model_id`: the Models tab lists it beside the
    test metrics evaluate logs, which MLflow links to the run's model itself)."""
    final = overfitting.kept(history)
    val_accuracy = float(final["val_accuracy"]) if "val_accuracy" in final else None
    if val_accuracy is not None:
        kept = {names.KEPT_VAL_ACCURACY: val_accuracy}
        record.metrics(kept, model_id=model_uri.removeprefix("models:/"))
    log.info(
        "final training accuracy %.2f%%%s",
        100 * final["accuracy"],
        "" if val_accuracy is None else f", validation {100 * val_accuracy:.2f}%",
    )
    return val_accuracy


def register_version(
    cfg: config.Config,
    paths: config.PathsConfig,
    net: keras.Model,
    model_uri: str,
    val_accuracy: float | None,
) -> registry.Decision:
    """Register the logged model as a new version; it takes @champion only if it beats the
    champion significantly on the validation digits both saw (`registry.register`)."""
    name = cfg.tracking.registered_model
    decision = registry.register(
        name,
        model_uri,
        net=net,
        validation=registry.validation(Path(paths.prepared), cfg.train.validation_split),
        level=cfg.tracking.promotion_level,
        val_accuracy=val_accuracy,
        family=cfg.model.family,
    )
    log.info("registered as %s version %d: %s", name, decision.version, decision.line)
    return decision


def restore(cfg: config.Config, done: reuse.Done) -> None:
    """The outputs of a job done before (`tracking.reuse`), from its run: the model file as
    `model.save` writes it, the history, the environment (the same: it is in the job's key);
    registered if it was not. The same bytes as training would write; nothing trained."""
    log.info("%s", done.line(os.environ.get(queues.EXP_NAME) or "params.yaml"))
    paths = cfg.paths
    with reuse.fetched(done, reuse.KERAS_FILE) as saved:
        with files.replacing(Path(paths.model), suffix=".keras") as tmp:
            model.restamp(saved, tmp)
    with reuse.fetched(done, Path(paths.history).name) as history:
        files.copy(history, Path(paths.history))
    facts = provenance.environment()
    files.write_text(Path(paths.environment), json.dumps(facts, indent=2) + "\n")
    if not reuse.registered(done.run_id):
        decision = registry.register(
            cfg.tracking.registered_model,
            done.model_uri,
            done.val_accuracy,
            validation=registry.validation(Path(paths.prepared), cfg.train.validation_split),
            level=cfg.tracking.promotion_level,
            family=cfg.model.family,
        )
        log.info("registered as version %d: %s", decision.version, decision.line)


def main(argv: list[str] | None = None) -> None:
    entry.parser("pipeline.train", __doc__).parse_args(argv)
    cfg = config.load()
    if cfg.replicates > 1:
        raise config.ConfigError(
            f"replicates={cfg.replicates}: a training is one seed; replicates are a sweep's: "
            f"python -m pipeline.sweep -m replicates={cfg.replicates}, or "
            f"dvc exp run --queue -S 'train.seed=range({cfg.train.seed},"
            f"{cfg.train.seed + cfg.replicates})'"
        )
    # No file links the outputs to the run: they would differ on every run. Evaluate finds
    # the run by the weights' digest.
    if cfg.reuse and (done := reuse.find(cfg.tracking.experiment, jobs.key_for(cfg))):
        restore(cfg, done)
        if queues.queued():
            queues.count_reused(cfg.tracking.experiment, done)
        return
    stage = {names.STAGE: "train"}
    # A queued experiment's run is a job of the queue's sweep (`tracking.queues`); any
    # experiment's run has DVC's name for it, as `dvc exp show` lists it.
    joined = queues.join(cfg.tracking.experiment, stage) if queues.queued() else None
    name = os.environ.get(queues.EXP_NAME)
    with queues.publishing_report(joined, last_stage=False):
        with runs.start(
            cfg.tracking.experiment, joined, name=name, tags=stage, system_metrics=True
        ) as run_id:
            log.info("MLflow run %s", run_id)
            run(cfg, cfg.paths)


if __name__ == "__main__":
    entry.run(main)
