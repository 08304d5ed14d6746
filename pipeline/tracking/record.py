"""What a run holds, written into the active run that `runs.start` opened: the resolved
config, the data it read, per-epoch and final metrics, files, and its provenance (where its
code came from, what it ran on, the digest of the weights it made)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.data.numpy_dataset import from_numpy

from pipeline import config
from pipeline.common import provenance
from pipeline.config import replicates
from pipeline.tracking import names, store

# Tags and artifacts that `reproduce` reads back.
DIFF_ARTIFACT = "source.diff"
CONFIG_ARTIFACT = "config.yaml"


def configuration(cfg: config.Config) -> None:
    """The whole resolved config as flat params and the config file, and its configuration
    (every param but the seed, as a digest); where the code came
    from (the commit, and the uncommitted changes as a patch to rebuild it with); and the DVC
    experiment of this run."""
    mlflow.log_params(config.flatten(cfg))
    mlflow.log_dict(config.to_dict(cfg), CONFIG_ARTIFACT)
    tags = {names.CONFIGURATION: replicates.configuration(cfg)}  # its replicates share it
    head = provenance.commit()
    if head:
        diff = provenance.source_diff()
        tags |= {names.COMMIT: head, names.DIRTY: str(bool(diff))}
        if diff:
            mlflow.log_text(diff, DIFF_ARTIFACT)
    for env, tag in (
        ("DVC_EXP_NAME", names.DVC_EXP_NAME),
        ("DVC_EXP_BASELINE_REV", names.DVC_BASELINE),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    mlflow.set_tags(tags)


def environment(facts: dict[str, str], job_key: str | None = None) -> None:
    """The environment that decides the numbers (`provenance.environment()`), as tags, and
    a training's job key (`pipeline.config.jobs`), which finds its run for a sweep to reuse (a
    reproduction has none: it ran another commit's code)."""
    tags = {names.ENV_PREFIX + name: value for name, value in facts.items()}
    mlflow.set_tags(tags | ({names.JOB_KEY: job_key} if job_key else {}))


def made_by(cfg: config.Config) -> dict[str, Any]:
    """The params that decide a model's numbers, its seed among them: its logged model's."""
    made = {key: value for key, value in config.flatten(cfg).items() if replicates.decides(key)}
    return made | {replicates.SEED: cfg.train.seed}


def tags(values: dict[str, str]) -> None:
    mlflow.set_tags(values)


def weights(digest: str) -> None:
    """The trained weights' digest (`provenance.weights_digest`), which evaluate finds the
    run by."""
    mlflow.set_tag(names.WEIGHTS, digest)


def data(x: np.ndarray, y: np.ndarray, meta: dict, source: str, context: str) -> None:
    """The dataset as a run input, and its content fingerprint as a tag.

    The dataset's digest is the fingerprint's first 8 digits (the sha256 of the raw arrays the
    prepared ones are made from): MLflow's own digest would copy the whole training set to
    hash its first 10,000 values.
    """
    with warnings.catch_warnings():
        # MLflow registers its local source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = from_numpy(
            x, targets=y, source=source, name=f"mnist-{context}", digest=meta["fingerprint"][:8]
        )
    # MLflow's SQL store looks the dataset up, then inserts it: jobs starting together can all
    # miss it, and all inserts but one then break the unique key. Another try finds the one
    # that was inserted and links it to this run.
    store.racing(lambda: mlflow.log_input(dataset, context=context))
    mlflow.set_tag(names.FINGERPRINT, meta["fingerprint"])


def metrics(
    values: dict[str, float], step: int | None = None, model_id: str | None = None
) -> None:
    """Metrics of the run, or of one epoch (`step`), linked to a logged model where given.
    Synchronous: MLflow's async logging saves milliseconds an epoch but its shutdown at the
    run's end costs more than a 5-epoch run saves."""
    mlflow.log_metrics(values, step=step, model_id=model_id)


def epoch(number: int, values: dict[str, float]) -> None:
    """One epoch's metrics at `step=number`: the shape of `train.train`'s `on_epoch`."""
    metrics(values, step=number)


def artifacts(paths: list[Path], folder: str | None = None) -> None:
    """Files as artifacts of the run, in `folder` if given."""
    for path in paths:
        mlflow.log_artifact(str(path), folder)


def document(content: Any, name: str) -> None:
    """A JSON or YAML document (by `name`'s extension) as an artifact of the run."""
    mlflow.log_dict(content, name)
