"""Imports follow the data: the stages before training never pay for TensorFlow or MLflow;
and importing the pipeline changes nothing in the process but the Keras backend's default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import ROOT


@pytest.mark.parametrize("module", ["pipeline.config", "pipeline.download", "pipeline.preprocess"])
def test_light_stages_import_neither_tensorflow_keras_nor_mlflow(module):
    probe = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Importing the package sets one thing, the documented one: KERAS_BACKEND where the user set
# none (pipeline/__init__.py). The probe runs without pytest's KERAS_BACKEND (conftest's import
# of `pipeline` set it there), so that change shows. What the libraries themselves do on import
# (TensorFlow, Keras and MLflow set variables) is theirs: they are imported after the package
# (Keras then picks the backend it set) and before its modules, and only what the pipeline's
# own code changes is compared.
UNCHANGED = """
import importlib, json, logging, os, pkgutil, signal

def state():
    with open("/proc/self/status") as status:
        umask = next(line.split()[1] for line in status if line.startswith("Umask"))
    return {"environment": dict(os.environ), "umask": umask,
            "logging": [logging.root.level, [repr(h) for h in logging.root.handlers]],
            "signals": [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]}

def changes(before, after):
    return {"changed": sorted(k for k in before if before[k] != after[k]),
            "set": {k: v for k, v in after["environment"].items()
                    if before["environment"].get(k) != v},
            "removed": sorted(set(before["environment"]) - set(after["environment"]))}

os.umask(0o022)  # whatever the caller's was
before = state()
import pipeline
package = changes(before, state())
import hydra, keras, matplotlib, mlflow, pandas, PIL
before = state()
modules = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"modules": modules, "package": package, "rest": changes(before, state()),
                  "backend": keras.backend.backend()}))
"""
NOTHING = {"changed": [], "set": {}, "removed": []}


@pytest.mark.parametrize(
    ("users", "package"),
    [
        (None, {"changed": ["environment"], "set": {"KERAS_BACKEND": "jax"}, "removed": []}),
        ("tensorflow", NOTHING),
    ],
    ids=["no-backend-set", "tensorflow-set"],
)
def test_importing_the_pipeline_changes_only_the_keras_backends_default(users, package):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.pop("KERAS_BACKEND", None)  # set in pytest's process by conftest's import of `pipeline`
    if users is not None:
        env["KERAS_BACKEND"] = users
    done = subprocess.run(
        [sys.executable, "-c", UNCHANGED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert {"pipeline.tracking.runs", "pipeline.sweep", "pipeline.train"} <= set(found["modules"])
    assert found["package"] == package
    assert found["rest"] == NOTHING
    assert found["backend"] == (users or "jax")
