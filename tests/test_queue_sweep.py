"""The DVC queue as a sweep, and DVC's stages reusing a job done before, on real MNIST.

`dvc exp run --queue` then `dvc queue start`, as DVC users run a sweep: the experiments of one
commit are the jobs of one MLflow parent run with the sweep report, named as DVC names them;
one queued again trains nothing. `dvc repro -f` of a job done restores its outputs, the same
bytes, from its run; `reuse=false` trains it again.
"""

from __future__ import annotations

import io
import json
import sys

import pandas as pd
import pytest

from pipeline.sweep import report as sweep_report
from pipeline.tracking import names, queues

from .helpers.project import Project, sh

pytestmark = pytest.mark.e2e
QUEUE = ("dvc", "exp", "run", "--queue", "-S", "train.epochs=1")


def _jobs(runs):
    return [run for run in runs if run.data.tags.get(names.SWEEP) != "parent"]


def _queue_parent(runs):
    (parent,) = [run for run in runs if run.data.tags.get(names.SWEEP) == "parent"]
    assert parent.data.tags[names.LAUNCHER] == queues.LAUNCHER
    return parent


def _assert_the_jobs_are_dvc_experiments(clone: Project, client, jobs, head: str) -> None:
    shown = pd.read_csv(io.StringIO(clone.sh("dvc", "exp", "show", "--csv")))
    shown = shown.dropna(subset=["Experiment"]).set_index("Experiment")
    for run in jobs:
        assert run.info.status == "FINISHED"
        for name in ("accuracy", "val_accuracy", "train_val_gap"):
            assert len(client.get_metric_history(run.info.run_id, name)) == 1, name
        assert {"test_accuracy", "overfitting_gap"} <= set(run.data.metrics)
        # The experiment `dvc exp show` lists and the MLflow run name each other.
        assert run.info.run_name == run.data.tags[names.DVC_EXP_NAME]
        row = shown.loc[run.info.run_name]
        assert row["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
        assert row["train.batch_size"] == int(run.data.params["train.batch_size"])
        assert run.data.tags[names.DVC_BASELINE] == head
        # A queued experiment runs in a copy of its own, yet records the baseline commit and
        # a clean source (the params it changes are not source): `reproduce` can rebuild it.
        assert run.data.tags[names.COMMIT] == head
        assert run.data.tags[names.DIRTY] == "False"


def test_a_dvc_queue_is_one_sweep_and_a_job_queued_again_is_not_run_again(lab, tmp_path):
    # A fresh clone: no MLflow store yet. It shares the project's DVC cache (the data).
    clone = Project(tmp_path / "clone", lab.env)
    sh(tmp_path, lab.env, "git", "clone", "-q", str(lab.path), str(clone.path))
    clone.sh("dvc", "cache", "dir", "--local", str(lab.path / ".dvc/cache"))
    clone.sh(*QUEUE, "-S", "train.batch_size=64,256")
    status = clone.run_queue(tmp_path / "queue.log")
    client, runs = clone.runs()
    jobs = _jobs(runs)
    assert sorted(r.data.params["train.batch_size"] for r in jobs) == ["256", "64"], status
    head = clone.sh("git", "rev-parse", "HEAD").strip()
    _assert_the_jobs_are_dvc_experiments(clone, client, jobs, head)
    parent = _queue_parent(runs)
    assert parent.info.status == "FINISHED" and parent.data.tags[names.DVC_BASELINE] == head
    assert {run.data.tags[names.PARENT] for run in jobs} == {parent.info.run_id}
    assert parent.data.metrics[names.JOBS] == 2 and parent.data.metrics[names.JOBS_FAILED] == 0
    report = pd.read_csv(clone.path / parent.data.tags[names.SWEEP_DIR] / sweep_report.CSV)
    assert sorted(report["run_id"]) == sorted(run.info.run_id for run in jobs)
    versions = client.search_model_versions("name = 'mnist'")

    # The same job queued again, and a new one: only the new one trains.
    clone.sh(*QUEUE, "-S", "train.batch_size=256,512")
    status = clone.run_queue(tmp_path / "queue-2.log")
    client, runs = clone.runs()
    assert sorted(r.data.params["train.batch_size"] for r in _jobs(runs)) == [
        "256",
        "512",
        "64",
    ], status
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics[names.JOBS] == 3
    assert len(client.search_model_versions("name = 'mnist'")) == len(versions) + 1
    shown = pd.read_csv(io.StringIO(clone.sh("dvc", "exp", "show", "--csv")))
    accuracies = shown.loc[shown["train.batch_size"] == 256, "test_accuracy"]
    assert len(accuracies) == 2 and accuracies.nunique() == 1  # its outputs, restored


def test_dvc_repro_of_a_job_done_restores_its_outputs_and_reuse_false_trains(lab):
    before = {path: (lab.path / path).read_bytes() for path in ("models/model.keras",)}
    lock = (lab.path / "dvc.lock").read_text()
    _, runs = lab.runs()
    output = lab.sh("dvc", "repro", "-f", "train", "evaluate")
    assert f"reusing run {runs[-1].info.run_id} for params.yaml" in output
    assert "training" not in output and "evaluated before" in output
    assert {path: (lab.path / path).read_bytes() for path in before} == before
    assert (lab.path / "dvc.lock").read_text() == lock, "other bytes than training's"
    assert len(lab.runs()[1]) == len(runs)

    lab.sh(sys.executable, "-m", "pipeline.config", "train.epochs=1", "reuse=false")
    output = lab.sh("dvc", "repro", "-f", "train", "evaluate")
    assert "training 1 epochs" in output
    _, again = lab.runs()
    assert len(again) == len(runs) + 1
    assert again[-1].data.tags[names.DUPLICATE_OF] == runs[-1].info.run_id
    assert again[-1].data.tags[names.JOB_KEY] == runs[-1].data.tags[names.JOB_KEY]
    # Trained again, the same bytes: what reuse restored is what training writes.
    assert {path: (lab.path / path).read_bytes() for path in before} == before
    metrics = json.loads((lab.path / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] == runs[-1].data.metrics["test_accuracy"]
