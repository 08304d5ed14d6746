"""Imports follow the data: the stages before training never pay for TensorFlow or MLflow;
and importing the pipeline changes nothing in the process."""

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


# What the libraries themselves do on import (TensorFlow and MLflow set variables) is theirs:
# they are imported first, and only what the pipeline's own modules change is compared.
UNCHANGED = """
import importlib, json, logging, os, pkgutil, signal
import hydra, keras, matplotlib, mlflow, pandas, PIL

def state():
    with open("/proc/self/status") as status:
        umask = next(line.split()[1] for line in status if line.startswith("Umask"))
    return {"environment": dict(os.environ), "umask": umask,
            "logging": [logging.root.level, [repr(h) for h in logging.root.handlers]],
            "signals": [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]}

os.umask(0o022)  # whatever the caller's was
before = state()
import pipeline
modules = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for name in modules:
    importlib.import_module(name)
after = state()
print(json.dumps({"modules": modules, "changed": [k for k in before if before[k] != after[k]],
                  "variables": sorted(set(after["environment"].items())
                                      ^ set(before["environment"].items()))}))
"""


def test_importing_every_pipeline_module_changes_nothing_in_the_process():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
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
    assert found["changed"] == [], found["variables"]
