"""Keras' two backends through the pipeline on real MNIST. JAX, the default, runs every other
end-to-end test; here TensorFlow (`KERAS_BACKEND=tensorflow`): the stages under DVC, the
model's requirements, predict (on the default backend: a `.keras` file is the same model on
either), and the reproduction, which takes the backend from the run's record whatever the
environment says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from PIL import Image

from pipeline.reproduce import __main__ as reproduce

from .helpers.project import Project

TENSORFLOW = {"KERAS_BACKEND": "tensorflow"}


def test_reproduce_names_the_backend_a_run_needs_when_it_is_missing():
    run = SimpleNamespace(run_id="abc123", environment={"keras_backend": "nosuchbackend"})
    with pytest.raises(reproduce.ReproduceError, match=r"pip install nosuchbackend"):
        reproduce._backend(run)  # type: ignore[arg-type]


def test_a_rebuild_trains_on_the_recorded_backend_with_this_projects_compilations(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    run = SimpleNamespace(run_id="abc123", environment={"keras_backend": "tensorflow"})
    env = reproduce._backend(run)  # type: ignore[arg-type]
    assert env["KERAS_BACKEND"] == "tensorflow"  # whatever this process runs on
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / ".jax-cache")  # DVC_ROOT's
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    assert reproduce._backend(run)["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"  # the user's


def _run(lab: Project, env: dict, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=lab.path, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.e2e
def test_the_pipeline_runs_on_tensorflow_and_reproduces_on_it_from_the_record(tmp_path):
    lab = Project.copy(tmp_path / "project")
    assert "KERAS_BACKEND" not in lab.env  # the default is what a new user gets
    done = _run(lab, lab.env | TENSORFLOW, "dvc", "exp", "run", "-S", "train.epochs=1")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client, runs = lab.runs()
    run = runs[-1]
    assert run.data.tags["env.keras_backend"] == "tensorflow" and "env.jax" not in run.data.tags
    metrics = json.loads((lab.path / "reports/metrics.json").read_text())
    assert 0.95 < metrics["test_accuracy"] < 0.99
    mlflow.set_tracking_uri(f"sqlite:///{lab.path / 'mlflow.db'}")
    folder = mlflow.artifacts.download_artifacts("models:/mnist/1", dst_path=str(tmp_path))
    pins = (Path(folder) / "requirements.txt").read_text().split()
    assert any(p.startswith("tensorflow==") for p in pins), pins
    assert not any(p.startswith("jax") for p in pins), pins

    with np.load(lab.path / "data/raw/mnist.npz") as mnist:
        Image.fromarray(mnist["x_test"][0]).save(tmp_path / "seven.png")
    predicted = _run(
        lab, lab.env, sys.executable, "-m", "pipeline.predict", str(tmp_path / "seven.png")
    )
    assert predicted.stdout.split()[1:2] == ["7"], predicted.stdout + predicted.stderr[-2000:]

    # On the default backend here: the record says TensorFlow, and the rebuild trains on it.
    done = _run(lab, lab.env, sys.executable, "-m", "pipeline.reproduce", run.info.run_id)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("identical") and "environment: the same" in done.stdout
