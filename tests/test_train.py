"""pipeline/train.py: the training loop on tiny synthetic digits, and the train stage, as DVC
runs it, when its loss diverges or it is stopped mid-training."""

from __future__ import annotations

import dataclasses
import json
import signal

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline import config, model, provenance, train
from pipeline.config import Loss
from pipeline.tracking import store

from .helpers.processes import wait_for
from .helpers.stage import Stage


def test_train_learns_and_records_every_epoch(tiny_cfg, tiny_data):
    seen = []
    net, history = train.train(
        tiny_cfg, *tiny_data, on_epoch=lambda e, m: seen.append((e, m)), verbose=0
    )
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["val_accuracy"].iloc[-1] > 0.9, "the model did not learn a trivial task"
    # The true gap: the model at each epoch's end on training digits, against validation.
    gap = history["train_sample_accuracy"] - history["val_accuracy"]
    np.testing.assert_allclose(history["train_val_gap"], gap)
    trained = tiny_data[0][:300], tiny_data[1][:300]  # all 300 of the training part
    final = net.predict(trained[0], verbose=0)
    assert history["train_sample_accuracy"].iloc[-1] == np.mean(final.argmax(axis=1) == trained[1])
    assert history["train_sample_loss"].iloc[-1] == pytest.approx(
        model.cross_entropy(final, trained[1]), rel=1e-5
    )
    # Wall times go to MLflow, not into the history, which the same inputs make the same.
    assert all(values["epoch_time_s"] > 0 for _, values in seen)
    assert "epoch_time_s" not in history


def test_without_a_train_sample_the_gap_is_keras_running_mean(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, train_sample=0))
    _, history = train.train(cfg, *tiny_data, verbose=0)
    assert "train_sample_accuracy" not in history
    np.testing.assert_allclose(
        history["train_val_gap"], history["accuracy"] - history["val_accuracy"]
    )


def test_early_stopping_stops_and_keeps_the_best_epochs_weights(tiny_cfg, tiny_data):
    # min_delta 0.5: after the first epoch nothing counts as an improvement.
    stopping = config.EarlyStoppingConfig(True, config.Monitor.val_loss, 1, 0.5)
    cfg = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, epochs=30, early_stopping=stopping)
    )
    net, history = train.train(cfg, *tiny_data, verbose=0)
    assert history["epoch"].tolist() == [1, 2]  # stopped after `patience` epochs
    assert history["weights_kept"].tolist() == [1, 0]
    one = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, epochs=1))
    first, _ = train.train(one, *tiny_data, verbose=0)
    assert provenance.weights_digest(net.get_weights()) == provenance.weights_digest(
        first.get_weights()
    )


def test_validation_split_zero_trains_on_everything_like_the_notebook(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, validation_split=0.0)
    )
    _, history = train.train(cfg, *tiny_data, verbose=0)
    assert "val_accuracy" not in history and "train_val_gap" not in history
    assert history["accuracy"].iloc[-1] > 0.9


def test_sparse_labels_train_as_well(tiny_cfg, tiny_data):
    cfg = dataclasses.replace(
        tiny_cfg,
        train=dataclasses.replace(tiny_cfg.train, loss=Loss.sparse_categorical_crossentropy),
    )
    _, history = train.train(cfg, *tiny_data, verbose=0)
    assert history["val_accuracy"].iloc[-1] > 0.9


def test_same_seed_same_weights(tiny_cfg, tiny_data):
    first, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    second, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps", [4, 19])  # 19: all of an epoch's batches in one call
def test_steps_per_execution_changes_the_speed_not_the_model(tiny_cfg, tiny_data, steps):
    one_at_a_time = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps_per_execution=1)
    )
    grouped = dataclasses.replace(
        tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps_per_execution=steps)
    )
    first, first_history = train.train(one_at_a_time, *tiny_data, verbose=0)
    second, second_history = train.train(grouped, *tiny_data, verbose=0)
    assert second.steps_per_execution == steps
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    columns = ["accuracy", "loss", "val_accuracy", "val_loss"]
    np.testing.assert_allclose(first_history[columns], second_history[columns], rtol=1e-5)


# ---------------------------------------------------------------- the stage, diverging or stopped


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
