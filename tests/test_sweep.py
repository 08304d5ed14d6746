"""Hydra sweeps through `python -m pipeline.sweep`, on tiny synthetic digits and a real store.

Each sweep runs as a user runs it, in a subprocess; its store is the test's own
(`DVC_ROOT` = the test's folder, see conftest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from omegaconf import OmegaConf

from pipeline import report, sweep, tracking

from .conftest import write_prepared


class Sweep:
    """One finished `python -m pipeline.sweep` and what it left in MLflow."""

    def __init__(self, tmp_path: Path, *overrides: str, prepared: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        prepared = prepared or write_prepared(tmp_path / "prepared")
        self.folder = tmp_path / "multirun"
        command = [sys.executable, "-m", "pipeline.sweep", *overrides, "model.hidden_units=16",
                   f"paths.prepared={prepared}", f"hydra.sweep.dir={self.folder}",
                   f"hydra.run.dir={tmp_path / 'run'}"]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env=os.environ | (env or {}))
        self.returncode, self.output = done.returncode, done.stdout + done.stderr
        self.store_made = (tmp_path / "mlflow.db").exists()  # before the client makes one
        self.client = MlflowClient(tracking.uri())
        experiment = self.client.get_experiment_by_name("mnist")
        self.runs = self.client.search_runs([experiment.experiment_id]) if experiment else []
        self.parents = [r for r in self.runs if r.data.tags.get(tracking.SWEEP_TAG) == "parent"]

    @property
    def parent(self):
        (parent,) = self.parents
        return parent

    def children(self):
        return [r for r in self.runs
                if r.data.tags.get("mlflow.parentRunId") == self.parent.info.run_id]

    def artifact(self, run, name: str, tmp_path: Path) -> Path:
        return Path(self.client.download_artifacts(run.info.run_id, name, str(tmp_path)))


def _combo(run) -> tuple[str, str]:
    return run.data.params["train.epochs"], run.data.params["train.batch_size"]


def _layer_names(model: Path) -> list[str]:
    with zipfile.ZipFile(model) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    return [layer["config"]["name"] for layer in layers]


def test_a_2x2_sweep_is_one_parent_run_with_a_finished_child_per_job(tmp_path):
    # A run id left in the environment (a shell inside `mlflow run`) must not be resumed.
    done = Sweep(tmp_path, "-m", "train.epochs=1,2", "train.batch_size=16,32",
                 env={"MLFLOW_RUN_ID": "0" * 32})
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert len(done.runs) == 5 and len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "32"), ("2", "16"), ("2", "32")]
    for child in children:
        epochs = int(child.data.params["train.epochs"])
        history = done.client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, epochs + 1))
        assert {"test_accuracy", "overfitting_gap", "train_accuracy"} <= set(child.data.metrics)
        assert child.data.tags["mlflow.runName"] == (
            f"train.epochs={epochs} train.batch_size={child.data.params['train.batch_size']}")
        job = Path(child.data.tags["hydra_output_dir"])
        record = json.loads((job / "run.json").read_text())
        assert record["run_id"] == child.info.run_id
        assert done.client.get_logged_model(record["model_uri"].removeprefix("models:/")
                                            ).source_run_id == child.info.run_id
        # Clean Keras state: no job's layers are numbered after an earlier job's.
        assert _layer_names(job / "model.keras") == ["input_layer", "dense", "dense_1"]
        # The job's folder and its run hold the same config: either reproduces it.
        kept = yaml.safe_load((job / ".hydra/config.yaml").read_text())
        logged = yaml.safe_load(done.artifact(child, "config.yaml", tmp_path).read_text())
        assert kept == logged and kept["train"]["epochs"] == epochs

    parent = done.parent
    assert parent.info.status == "FINISHED"
    assert parent.data.params["train.epochs"] == "1,2"
    assert parent.data.params["train.batch_size"] == "16,32"
    assert parent.data.metrics["jobs"] == 4 and parent.data.metrics["jobs_failed"] == 0
    best = max(children, key=lambda r: r.data.metrics["val_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert [r.info.run_id for r in children
            if done.client.get_run(r.info.run_id).data.tags.get(tracking.BEST_TAG)] == [
        best.info.run_id]
    logged = pd.read_csv(done.artifact(parent, report.CSV, tmp_path))
    assert len(logged) == 4 and set(logged["run_id"]) == {r.info.run_id for r in children}
    assert logged.equals(pd.read_csv(done.folder / report.CSV))
    assert (done.folder / report.PLOT).stat().st_size > 10_000
    assert best.info.run_id in parent.data.tags["mlflow.note.content"]


def test_sweep_ranges_in_config_with_the_command_line_winning(tmp_path):
    done = Sweep(tmp_path, "-m", "grid=overfitting", "train.epochs=1")
    assert done.returncode == 0, done.output[-3000:]
    assert sorted(map(_combo, done.children()), key=lambda c: int(c[1])) == [
        ("1", "64"), ("1", "128"), ("1", "256")]


def test_a_failing_job_is_failed_the_others_still_log_and_the_sweep_exits_1(tmp_path):
    done = Sweep(tmp_path, "-m", "train.epochs=1", "train.seed=1,2,-1,3")
    assert done.returncode == 1
    children = done.children()
    finished = [r for r in children if r.info.status == "FINISHED"]
    (failed,) = [r for r in children if r.info.status == "FAILED"]
    assert sorted(r.data.params["train.seed"] for r in finished) == ["1", "2", "3"]
    assert all("test_accuracy" in r.data.metrics for r in finished)
    assert "train.seed must be >= 0, got -1" in failed.data.tags["error"]
    assert done.parent.info.status == "FAILED"
    assert done.parent.data.metrics["jobs_failed"] == 1
    assert "1 of 4 jobs failed" in done.output
    assert pd.read_csv(done.folder / report.CSV)["status"].tolist().count("FAILED") == 1


def test_the_joblib_launcher_runs_jobs_in_other_processes_under_one_parent(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher",
                        reason="pip install -e '.[joblib]' (make test does)")
    done = Sweep(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 "train.epochs=1", "train.batch_size=16,32", "train.seed=1,2")
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "16"), ("1", "32"), ("1", "32")]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in children)
    workers = {r.data.tags["pipeline.pid"] for r in children}
    assert len(workers) == 2 and done.parent.data.tags["pipeline.pid"] not in workers
    assert done.parent.info.status == "FINISHED" and done.parent.data.metrics["jobs"] == 4


def test_the_submitit_launcher_runs_each_job_as_a_submitit_job_under_one_parent(tmp_path):
    """submitit_local: the launcher and job files that SLURM uses (submitit_slurm), with
    jobs started as processes here instead of by sbatch."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="pip install -e '.[slurm]' (make test does)")
    done = Sweep(tmp_path, "-m", "hydra/launcher=submitit_local", "train.epochs=1",
                 "train.batch_size=16,32")
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "32")]
    assert {r.info.status for r in children} == {"FINISHED"}
    workers = {r.data.tags["pipeline.pid"] for r in children}
    assert len(workers) == 2 and done.parent.data.tags["pipeline.pid"] not in workers
    assert len(list((done.folder / ".submitit").glob("*/*_result.pkl"))) == 2
    assert done.parent.info.status == "FINISHED" and done.parent.data.metrics["jobs"] == 2


def test_without_multirun_it_is_one_plain_run(tmp_path):
    done = Sweep(tmp_path, "train.epochs=1")
    assert done.returncode == 0, done.output[-3000:]
    (run,) = done.runs
    assert not done.parents and "mlflow.parentRunId" not in run.data.tags
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "1"
    assert (tmp_path / "run/model.keras").is_file()


@pytest.mark.parametrize("multirun", [False, True])
def test_a_bad_base_config_stops_before_any_run(tmp_path, multirun):
    done = Sweep(tmp_path, *(["-m", "train.seed=1,2"] if multirun else []), "train.epochs=0")
    assert done.returncode == 1
    assert "train.epochs must be >= 1, got 0" in done.output
    assert not done.store_made


def test_missing_prepared_arrays_are_named_before_any_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = Sweep(tmp_path, "-m", "train.epochs=1,2", prepared=empty)
    assert done.returncode == 1
    assert f"{empty} lacks x_train.npy" in done.output and "dvc repro preprocess" in done.output
    assert not done.store_made


def test_overrides_from_config_then_the_command_line():
    node = OmegaConf.create({
        "sweeper": {"params": {"train.epochs": "5,10", "train.batch_size": "64,128"}},
        "overrides": {"task": ["train.epochs=1", "train.seed=range(1,3)",
                               "model.hidden_units=8"]}})
    given, swept = sweep._overrides(node)
    assert given == {"train.epochs": "1", "train.batch_size": "64,128",
                     "train.seed": "range(1,3)", "model.hidden_units": "8"}
    assert swept == ["train.batch_size", "train.seed"]


def _search_runs(rows: list[dict]) -> pd.DataFrame:
    """What `mlflow.search_runs` returns for a sweep's children (params are strings)."""
    start = pd.Timestamp("2026-11-21 10:00", tz="UTC")
    return pd.DataFrame([{
        "run_id": f"r{i}", "status": row.get("status", "FINISHED"),
        "start_time": start, "end_time": start + pd.Timedelta(seconds=10 * (i + 1)),
        "tags.mlflow.runName": f"job {i}", "params.train.seed": "42",
        **{f"params.train.{k}": str(row[k]) for k in ("epochs", "batch_size") if k in row},
        **{f"metrics.{k}": row[k] for k in report.METRICS if k in row}}
        for i, row in enumerate(rows)])


def test_report_table_sorts_by_epochs_and_batch_and_best_is_chosen_on_validation():
    runs = _search_runs([
        {"epochs": 10, "batch_size": 64, "train_accuracy": 0.99, "val_accuracy": 0.97,
         "test_accuracy": 0.99, "overfitting_gap": 0.0},
        {"epochs": 5, "batch_size": 128, "train_accuracy": 0.98, "val_accuracy": 0.98,
         "test_accuracy": 0.97, "overfitting_gap": 0.01},
        {"status": "FAILED"}])
    rows = report.table(runs)
    assert rows[["epochs", "batch_size"]].astype(object).values.tolist() == [
        [5, 128], [10, 64], [pd.NA, pd.NA]]
    assert rows["time_s"].tolist() == [20.0, 10.0, 30.0]
    assert "seed" not in rows, "a param every job shares is not a column"
    assert report.best(rows)["run_id"] == "r1", "the best run is picked on test accuracy"
    text = report.markdown(rows)
    assert "| job 2 " in text and "FAILED" in text and "98.00" in text


def test_report_shows_any_other_swept_param():
    runs = _search_runs([{"epochs": 1, "batch_size": 8}, {"epochs": 1, "batch_size": 8}])
    runs["params.train.optimizer"] = ["adam", "sgd"]
    rows = report.table(runs)
    assert rows["optimizer"].tolist() == ["adam", "sgd"]
    assert report.best(rows) is None, "no run has a validation accuracy"
