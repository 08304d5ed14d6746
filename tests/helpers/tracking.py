"""Reading what the pipeline wrote into the store its tests point at."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline.tracking import store


def get_run(run_id: str) -> Run:
    """A run of the store `store.uri()` names (the test's own, `DVC_ROOT=tmp_path`)."""
    return MlflowClient(store.uri()).get_run(run_id)


def recorded_run(tags: dict[str, str], config: dict | None = None, status="FINISHED") -> str:
    """A run of experiment `mnist` in the test's store with these tags and config artifact,
    ended with `status`, as if a stage had made it; its id."""
    client = MlflowClient(store.uri())
    run = client.create_run(store.experiment_id(client, "mnist"), tags=tags)
    if config is not None:
        client.log_dict(run.info.run_id, config, "config.yaml")
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id
