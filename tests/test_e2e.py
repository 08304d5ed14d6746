"""The whole pipeline on real MNIST, in a throwaway git + DVC copy of this project.

MNIST comes from the canonical URL, or from MNIST_SOURCE when set (CI and offline machines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipeline import config

from .conftest import ROOT

pytestmark = pytest.mark.e2e
STAGES = ("check_params", "download", "preprocess", "train", "evaluate")


def _sh(cwd: Path, env: dict, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


def _ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


class Project:
    def __init__(self, path: Path, env: dict) -> None:
        self.path, self.env = path, env

    def sh(self, *cmd: str) -> str:
        return _sh(self.path, self.env, *cmd)

    def runs(self):
        client = MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")
        return client, client.search_runs(
            [client.get_experiment_by_name("mnist").experiment_id], order_by=["start_time"])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """This project's files in a fresh git repo, after `dvc exp run -S train.epochs=1`."""
    path = tmp_path_factory.mktemp("e2e") / "project"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        if (ROOT / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "KERAS_HOME": str(path.parent / "keras-home"), "MLFLOW_DISABLE_TELEMETRY": "true",
            "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.com",
            "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.com"}
    proj = Project(path, env)
    proj.sh("git", "init", "-q", "-b", "main")
    proj.sh("git", "add", "-A")
    proj.sh("git", "commit", "-q", "-m", "baseline")
    proj.output = proj.sh("dvc", "exp", "run", "-S", "train.epochs=1")
    return proj


def test_exp_run_composes_params_and_runs_every_stage(project):
    assert _ran(project.output) == set(STAGES)
    params = yaml.safe_load((project.path / "params.yaml").read_text())
    assert params == config.compose(["train.epochs=1"])
    lock = yaml.safe_load((project.path / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["epochs"] == 1


def test_metrics_show_test_accuracy_and_the_overfitting_gap(project):
    metrics = json.loads((project.path / "reports/metrics.json").read_text())
    assert 0.93 < metrics["test_accuracy"] < 0.99
    assert metrics["overfitting_gap"] == pytest.approx(
        metrics["train_accuracy"] - metrics["test_accuracy"])
    assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
    shown = project.sh("dvc", "metrics", "show", "--json")
    assert "test_accuracy" in shown
    assert "test accuracy" in project.output and "overfitting gap" in project.output


def test_one_mlflow_run_holds_params_curves_gap_tags_and_model(project):
    client, runs = project.runs()
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1" and run.data.params["train.batch_size"] == "128"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "train_val_gap"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1], name
    metrics = json.loads((project.path / "reports/metrics.json").read_text())
    assert run.data.metrics["overfitting_gap"] == pytest.approx(metrics["overfitting_gap"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    tags = run.data.tags
    assert tags["data_fingerprint"] == config.Config().data.fingerprint
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["git_dirty"] in ("True", "False")
    assert tags.get("dvc_exp_name"), "the DVC experiment name is not on the run"
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "testing"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "metrics.json", "confusion_matrix.json"} <= artifacts


def test_logged_model_predicts_a_7_for_the_first_test_digit(project):
    record = json.loads((project.path / "models/run.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{project.path / 'mlflow.db'}")
    loaded = mlflow.keras.load_model(record["model_uri"])
    first = np.load(project.path / "data/prepared/x_test.npy", mmap_mode="r")[:1]
    assert int(loaded.predict(np.asarray(first), verbose=0).argmax()) == 7


def test_second_repro_reruns_nothing(project):
    output = project.sh("dvc", "repro")
    assert _ran(output) == set()
    assert "Data and pipelines are up to date" in output


def test_a_key_no_stage_reads_is_still_refused(project):
    done = subprocess.run(["dvc", "exp", "run", "-S", "+typo=5"], cwd=project.path,
                          env=project.env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "unknown key 'typo'" in done.stdout + done.stderr
    assert _ran(done.stdout) == {"check_params"}
    project.sh("git", "checkout", "params.yaml")


def test_changing_epochs_reruns_only_train_and_evaluate(project):
    project.sh(sys.executable, "-m", "pipeline.config", "train.epochs=2")
    output = project.sh("dvc", "repro")
    assert _ran(output) == {"check_params", "train", "evaluate"}
    client, runs = project.runs()
    assert len(runs) == 2 and runs[-1].data.params["train.epochs"] == "2"
    assert len(client.get_metric_history(runs[-1].info.run_id, "accuracy")) == 2
