"""The model in MLflow: logged with its run, registered as a version, aliased `champion` when
it beats the champion on evidence (`promotion`), and loaded back from a `models:/` or
`runs:/` URI."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline import preprocess
from pipeline.tracking import names, promotion, store
from pipeline.tracking.promotion import CHAMPION, Decision, Validation
from pipeline.training.model import PREDICT_BATCH

__all__ = [
    "CHAMPION",
    "MODEL_NAME",
    "Decision",
    "Validation",
    "load_model",
    "log_model",
    "register",
    "validation",
]

MODEL_NAME = "model"  # the artifact folder of a run's model: runs:/<id>/model


# What a logged model needs to load, by Keras backend (`KERAS_BACKEND`).
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib")}


def _requirements() -> list[str]:
    # Given explicitly: MLflow's own inference takes seconds a model (docs/performance.md).
    import keras  # imported by whoever logs a model

    found = []
    for dist in (*BACKEND_PACKAGES.get(keras.backend.backend(), ()), "keras"):
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def log_model(model: Any, params: dict[str, Any] | None = None) -> str:
    """Log the Keras model in the active run, with its signature and the params that made it
    (the experiment's Models tab shows them beside it); return its `models:/` URI.

    No input example: with Keras 3 it crashes log_model (mlflow/mlflow#16183, still open).
    """
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.input_shape[-1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]),
    )
    info = mlflow.keras.log_model(
        model,
        name=MODEL_NAME,
        signature=signature,
        pip_requirements=_requirements(),
        params={key: str(value) for key, value in (params or {}).items()},
    )
    return info.model_uri


def validation(prepared: Path, validation_split: float) -> Validation | None:
    """The validation digits training held out of the prepared arrays (Keras' rule: the last
    `validation_split` of them); None when it held none out."""
    from pipeline.training import model

    x, y = preprocess.load_split(prepared, "train")
    start = model.training_part(len(x), validation_split)
    if start >= len(x):
        return None
    fingerprint = str(preprocess.read_meta(prepared)["fingerprint"])[:12]
    return Validation(x[start:], np.asarray(y[start:]), f"{fingerprint}:{validation_split}")


def register(
    name: str,
    model_uri: str,
    val_accuracy: float | None = None,
    *,
    net: Any | None = None,
    validation: Validation | None = None,
    replicates: list[float] | None = None,
    level: float = promotion.LEVEL,
    family: str,
) -> Decision:
    """Make the logged model a new version of registered model `name`, linked to its run and
    tagged with how it was validated; move `@champion` to it only on evidence that it beats
    the champion at `level` (`promotion.decide`); record the decision on the version.

    `net` is the model in memory, if there is one (else it is loaded from `model_uri` when a
    paired test needs its predictions); `replicates`: its configuration's seeds' validation
    accuracies, for Welch's test against a replicated champion; `family`: its model's
    (`model.family`), a tag of the version: the registered model names the task."""
    client = store.connect()
    tags = {**promotion.version_tags(validation, replicates, val_accuracy), names.FAMILY: family}
    candidate_hits = functools.cache(
        lambda: _hits(net if net is not None else load_model(model_uri), validation)
    )
    with store.lock():  # one alias decision at a time on the local store
        with store.unprinted():
            version = int(mlflow.register_model(model_uri, name, tags=tags).version)
        standing = promotion.Standing.of(version, tags)
        decision = _crown(client, name, standing, validation, candidate_hits, level)
    for key, value in promotion.decision_tags(decision).items():
        client.set_model_version_tag(name, str(version), key, value)
    client.update_model_version(name, str(version), description=decision.line)
    return decision


def _crown(
    client: MlflowClient,
    name: str,
    candidate: promotion.Standing,
    validation: Validation | None,
    candidate_hits: Callable[[], np.ndarray],
    level: float,
) -> Decision:
    """Decide against the current champion and move the alias if the candidate wins. On a
    server, jobs that finish together can race to create the alias: the losers decide again
    against the winner."""

    def correct(champion: promotion.Standing) -> promotion.Correct:
        held = load_model(f"models:/{name}/{champion.version}")
        return _hits(held, validation), candidate_hits()

    def attempt() -> Decision:
        decision = promotion.decide(name, candidate, _champion(client, name), correct, level)
        if decision.promoted:
            client.set_registered_model_alias(name, CHAMPION, str(candidate.version))
        return decision

    return store.racing(attempt)


def _champion(client: MlflowClient, name: str) -> promotion.Standing | None:
    """The `@champion` version and how it was validated; None if there is none yet."""
    try:
        found = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            raise  # not a missing alias: the store is down or refuses
        return None
    return promotion.Standing.of(int(found.version), found.tags)


def _hits(net: Any, validation: Validation | None) -> np.ndarray:
    """Which validation digits `net` gets right."""
    if validation is None:
        raise ValueError("no validation digits to predict: decide compares only on shared ones")
    scores = net.predict(validation.x, batch_size=PREDICT_BATCH, verbose=0)
    return np.argmax(scores, axis=-1) == validation.y


def load_model(model_uri: str) -> Any:
    """A Keras model from a `models:/` or `runs:/` URI in this project's store."""
    store.connect()
    try:
        return mlflow.keras.load_model(model_uri)
    except MlflowException as err:
        raise store.TrackingError(
            f"cannot load {model_uri} from {store.uri()}: {err.message} "
            "(train one with `dvc repro`, or pass a saved model: --model "
            "models/model.keras)"
        ) from None
