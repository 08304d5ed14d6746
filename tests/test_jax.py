"""Keras on JAX (`KERAS_BACKEND=jax`, the `jax` extra) through the pipeline on real MNIST: the
stages under DVC, the model's requirements, predict, and the reproduction, which takes the
backend from the run's record whatever the environment says."""

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

from pipeline import reproduce

from .helpers.project import Project

JAX = {"KERAS_BACKEND": "jax"}


def test_reproduce_names_the_extra_a_missing_backend_needs():
    run = SimpleNamespace(run_id="abc123", environment={"keras_backend": "nosuchbackend"})
    with pytest.raises(reproduce.ReproduceError, match=r"pip install -e '\.\[nosuchbackend\]'"):
        reproduce._backend(run)  # type: ignore[arg-type]


def _run(lab: Project, env: dict, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=lab.path, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.e2e
@pytest.mark.server  # needs the jax extra (make test-all installs it)
def test_the_pipeline_runs_on_jax_and_reproduces_on_it_from_the_record(tmp_path):
    pytest.importorskip("jax", reason="pip install -e '.[jax]' (make test-all does)")
    lab = Project.copy(tmp_path / "project")
    on_jax = lab.env | JAX
    done = _run(lab, on_jax, "dvc", "exp", "run", "-S", "train.epochs=1")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client, runs = lab.runs()
    run = runs[-1]
    assert run.data.tags["env.keras_backend"] == "jax" and "env.jax" in run.data.tags
    assert list((lab.path / ".jax-cache").iterdir()), "XLA's compilations were not kept"
    metrics = json.loads((lab.path / "reports/metrics.json").read_text())
    assert 0.95 < metrics["test_accuracy"] < 0.99
    mlflow.set_tracking_uri(f"sqlite:///{lab.path / 'mlflow.db'}")
    folder = mlflow.artifacts.download_artifacts("models:/mnist-dense/1", dst_path=str(tmp_path))
    pins = (Path(folder) / "requirements.txt").read_text().split()
    assert any(p.startswith("jax==") for p in pins), pins

    with np.load(lab.path / "data/raw/mnist.npz") as mnist:
        Image.fromarray(mnist["x_test"][0]).save(tmp_path / "seven.png")
    predicted = _run(
        lab, on_jax, sys.executable, "-m", "pipeline.predict", str(tmp_path / "seven.png")
    )
    assert predicted.stdout.split()[1:2] == ["7"], predicted.stdout + predicted.stderr[-2000:]

    # Without KERAS_BACKEND here: the record says JAX, and the rebuild trains on it.
    done = _run(lab, lab.env, sys.executable, "-m", "pipeline.reproduce", run.info.run_id)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("identical") and "environment: the same" in done.stdout
