"""A run's lifecycle across stages, against a real MLflow SQLite store in a temporary folder."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from mlflow import MlflowClient

from pipeline.tracking import record, runs, store

from .helpers.tracking import get_run


def test_a_run_that_raises_is_failed_with_the_reason():
    with pytest.raises(RuntimeError, match="loss is nan"):
        with runs.start("exp") as run_id:
            raise RuntimeError("loss is nan")
    run = get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: loss is nan"


def test_evaluate_adds_to_the_run_train_opened():
    with runs.start("exp") as run_id:
        for epoch in (1, 2, 3):
            record.epoch(epoch, {"accuracy": epoch / 10})
    with runs.start("exp", run_id=run_id) as resumed:
        record.metrics({"test_accuracy": 0.97})
    assert resumed == run_id
    run = get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.97
    history = MlflowClient(store.uri()).get_metric_history(run_id, "accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_an_inherited_mlflow_run_id_never_resumes_that_run(monkeypatch):
    with runs.start("exp") as first:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", first)
    with runs.start("exp") as second:
        pass
    assert second != first


def test_resuming_an_unknown_run_names_the_store_and_the_fix():
    with runs.start("exp"):
        pass
    with pytest.raises(store.TrackingError) as caught:
        with runs.start("exp", run_id="0" * 32):
            pass
    message = str(caught.value)
    assert "0" * 32 in message and store.uri() in message and "dvc repro -f train" in message


def _monitoring() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]


@pytest.mark.parametrize(
    ("raised", "status"),
    [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")],
)
def test_a_training_run_has_system_metrics_until_it_ends_however_it_ends(
    monkeypatch, raised, status
):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # entry's is 1 s
    with contextlib.suppress(RuntimeError, KeyboardInterrupt):
        with runs.start("exp", system_metrics=True) as run_id:
            assert _monitoring(), "MLflow's monitor did not start"
            time.sleep(0.5)
            if raised:
                raise raised("stop")
    assert _monitoring() == [], "MLflow's monitor outlived the run"
    run = get_run(run_id)
    assert run.info.status == status
    for name in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        assert f"system/{name}" in run.data.metrics, name


def test_system_metrics_are_a_training_runs_only_and_the_user_can_turn_them_off(monkeypatch):
    with runs.start("exp") as evaluation:
        assert _monitoring() == []
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    with runs.start("exp", system_metrics=True) as training:
        assert _monitoring() == []
    for run_id in (evaluation, training):
        assert not any(name.startswith("system/") for name in get_run(run_id).data.metrics)
