"""Imports follow the data: the stages before training never pay for TensorFlow or MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.parametrize("module", ["pipeline.config", "pipeline.download",
                                    "pipeline.preprocess"])
def test_light_stages_import_neither_tensorflow_keras_nor_mlflow(module):
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
