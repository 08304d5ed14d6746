"""Shared fixtures: the real config shrunk for speed, tiny synthetic data, an isolated store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reaches the developer's MLflow server, runs, Keras cache or DVC experiment."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME",
                 "MLFLOW_EXPERIMENT_ID", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def tiny_cfg() -> config.Config:
    """The real composed config, shrunk: a small hidden layer and a few quick epochs."""
    plain = config.compose(["train.epochs=3", "train.batch_size=16", "model.hidden_units=16",
                            "train.learning_rate=0.01", "train.validation_split=0.25"])
    return config.validate(plain, "tiny config")


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 784) float32 images whose label is which of ten pixel bands is lit, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
    for i, label in enumerate(labels.tolist()):
        images[i, label * 78:(label + 1) * 78] += 0.7
    return images, labels


@pytest.fixture
def tiny_data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_digits(400)
