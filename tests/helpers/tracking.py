"""Reading what the pipeline wrote into the store its tests point at."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline.tracking import store


def get_run(run_id: str) -> Run:
    """A run of the store `store.uri()` names (the test's own, `DVC_ROOT=tmp_path`)."""
    return MlflowClient(store.uri()).get_run(run_id)
