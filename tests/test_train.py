"""pipeline/train.py: the train stage as DVC runs it, when its loss diverges or it is stopped
mid-training, and the same bytes twice."""

from __future__ import annotations

import json
import signal

import pytest
from mlflow import MlflowClient

from pipeline.common import provenance
from pipeline.tracking import store
from pipeline.training import model

from .helpers.processes import wait_for
from .helpers.stage import Stage

# ---------------------------------------------------------------- the stage, diverging or stopped


def test_replicates_are_refused_by_the_stage_and_named_as_a_sweep(tmp_path):
    stage = Stage(tmp_path, "replicates=3")

    done = stage.run("train")

    assert done.returncode == 1
    assert "replicates=3: a training is one seed" in done.stderr
    assert "python -m pipeline.sweep -m replicates=3" in done.stderr
    assert "train.seed=range(42,45)" in done.stderr
    assert stage.runs() == [] and not (tmp_path / "models").exists()


def test_a_loss_that_becomes_nan_fails_the_run_and_publishes_nothing(tmp_path):
    stage = Stage(tmp_path, "train.learning_rate=1e20", "train.epochs=3")

    done = stage.run("train")

    assert done.returncode == 1
    assert "training diverged, and no model was saved or registered" in done.stderr
    assert "lower train.learning_rate (now 1e+20)" in done.stderr
    assert "Traceback" not in done.stderr
    (run,) = stage.runs()
    assert run.info.status == "FAILED"
    assert "the training loss became nan" in run.data.tags["error"]
    assert not (tmp_path / "models").exists() and stage.leftovers() == []
    assert MlflowClient(store.uri()).search_registered_models() == []


def test_sigterm_mid_training_marks_the_run_killed_and_leaves_no_model(tmp_path):
    stage = Stage(tmp_path, "train.epochs=100000")
    log = tmp_path / "train.log"
    process = stage.start("train", log)
    try:
        wait_for(lambda: "training 100000 epochs" in log.read_text(), "training to start")
        wait_for(
            lambda: [r for r in stage.runs() if r.data.metrics.get("loss")],
            "a first epoch in MLflow",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        process.kill()
    output = log.read_text()
    assert (
        "stopped by SIGTERM: nothing half-written was kept, and an MLflow run it had open "
        "is KILLED; rerun it (a stage: `dvc repro`)"
    ) in output
    assert "Traceback" not in output
    (run,) = stage.runs()
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("Stopped: signal SIGTERM")
    assert not (tmp_path / "models" / "model.keras").exists() and stage.leftovers() == []


@pytest.mark.e2e  # 30 s: three stage processes
def test_the_stage_gives_the_same_bytes_twice_and_evaluate_finds_its_run_by_the_weights(tmp_path):
    # Without the checkpoint cache, which would serve the second run without training.
    stage = Stage(tmp_path, "train.epochs=2", "checkpoints.enabled=false")
    outputs = ("models/model.keras", "reports/history.csv", "reports/environment.json")
    made = []
    for _ in range(2):
        done = stage.run("train")
        assert done.returncode == 0, done.stderr[-2000:]
        made.append([(tmp_path / name).read_bytes() for name in outputs])
    assert made[0] == made[1]  # so dvc.lock does not change when nothing did
    first, second = sorted(stage.runs(), key=lambda run: run.info.start_time)
    digest = provenance.weights_digest(model.load(tmp_path / outputs[0]).get_weights())
    environment = json.loads((tmp_path / outputs[2]).read_text())
    for run in (first, second):
        assert run.data.tags["weights_digest"] == digest
        assert {k[4:]: v for k, v in run.data.tags.items() if k.startswith("env.")} == environment
        assert "epoch_time_s" in run.data.metrics  # wall times stay in MLflow
    assert not (tmp_path / "models" / "run.json").exists()

    done = stage.run("evaluate")
    assert done.returncode == 0, done.stderr[-2000:]
    evaluated = {run.info.run_id: run for run in stage.runs()}
    assert len(evaluated) == 2, "evaluate opened a run of its own"
    assert "test_accuracy" in evaluated[second.info.run_id].data.metrics  # the latest
    assert "test_accuracy" not in evaluated[first.info.run_id].data.metrics
