"""The model in MLflow: logged with its run, registered as a version, the best one aliased
`champion`, and loaded back from a `models:/` or `runs:/` URI."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline.tracking import names, store

MODEL_NAME = "model"  # the artifact folder of a run's model: runs:/<id>/model
CHAMPION = "champion"  # the alias of the version with the best validation accuracy


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


def log_model(model: Any) -> str:
    """Log the Keras model in the active run, with its signature; return its `models:/` URI.

    No input example: with Keras 3 it crashes log_model (mlflow/mlflow#16183, still open).
    """
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.input_shape[-1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]),
    )
    info = mlflow.keras.log_model(
        model, name=MODEL_NAME, signature=signature, pip_requirements=_requirements()
    )
    return info.model_uri


def register(name: str, model_uri: str, val_accuracy: float | None) -> tuple[int, bool]:
    """Make the logged model a new version of registered model `name`, linked to its run;
    move the `champion` alias to it only if its validation accuracy beats the champion's.
    Return the version and whether it is the champion now."""
    client = store.connect()
    tags = {} if val_accuracy is None else {names.VERSION_VAL_ACCURACY: str(val_accuracy)}
    with store.lock():  # one alias decision at a time on the local store
        version = mlflow.register_model(model_uri, name, tags=tags)
        wins = _crown(client, name, version.version, val_accuracy)
    return int(version.version), wins


def _crown(client: MlflowClient, name: str, version: str, val_accuracy: float | None) -> bool:
    """Move the `champion` alias to `version` if its validation accuracy beats the
    champion's; whether it did. On a server, jobs that finish together can race to create
    the alias: the losers try again against the winner's."""

    def attempt() -> bool:
        try:
            champion = client.get_model_version_by_alias(name, CHAMPION)
            best = float(champion.tags.get(names.VERSION_VAL_ACCURACY, "-inf"))
        except MlflowException:  # no champion yet
            best = float("-inf")
        if val_accuracy is None or val_accuracy <= best:
            return False
        client.set_registered_model_alias(name, CHAMPION, version)
        return True

    return store.racing(attempt)


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
