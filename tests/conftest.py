"""Shared fixtures: the real config shrunk for speed, tiny synthetic data, an isolated store,
a copy of the project run on real MNIST, and the download tests' file and HTTP server.

What the fixtures and tests share beyond fixtures is in tests/helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline import config

from .helpers import browser
from .helpers.data import Synthetic, synthetic_digits, write_synthetic_mnist
from .helpers.http import PROXY_VARIABLES, ScriptedServer, scripted_server
from .helpers.project import Project


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[None]:
    """No test reaches the developer's MLflow server, runs, Keras cache or DVC experiment, and
    none leaves a variable behind for the tests after it (a function under test that sets
    defaults, as `entry.environment` does, writes os.environ itself, not through monkeypatch)."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        "DVC_EXP_NAME",
        "DVC_EXP_BASELINE_REV",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    before = dict(os.environ)
    yield
    for name in set(os.environ) - set(before):
        del os.environ[name]
    for name, value in before.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture
def tiny_cfg() -> config.Config:
    """The real composed config, shrunk: a small hidden layer and a few quick epochs."""
    plain = config.compose(
        [
            "train.epochs=3",
            "train.batch_size=16",
            "model.hidden_units=16",
            "train.learning_rate=0.01",
            "train.validation_split=0.25",
        ]
    )
    return config.validate(plain, "tiny config")


@pytest.fixture
def tiny_data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_digits(400)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Project:
    """This project's files in a fresh git repo, after `dvc exp run -S train.epochs=1` on real
    MNIST (from MNIST_SOURCE when set): trained once a session. The UI test reads it as it is;
    a test that changes it works in a copy of its own (`project.copy_to`, the `lab` fixture)."""
    proj = Project.copy(tmp_path_factory.mktemp("e2e") / "project")
    proj.output = proj.sh("dvc", "exp", "run", "-S", "train.epochs=1")
    return proj


@pytest.fixture
def lab(project, tmp_path) -> Project:
    """This test's own copy of the session's trained project (its one run, whose model is
    version 1 and the champion): the tests run in any order, or alone."""
    return project.copy_to(tmp_path / "project")


@pytest.fixture
def mnist(tmp_path) -> Synthetic:
    """The 'real' MNIST of the download tests: a tiny npz whose digests the DataConfig
    expects."""
    return write_synthetic_mnist(tmp_path / "source" / "mnist.npz")


@pytest.fixture
def dest(tmp_path) -> Path:
    """Where the download stage puts MNIST."""
    return tmp_path / "data" / "raw" / "mnist.npz"


@pytest.fixture
def http_server(monkeypatch) -> Iterator[ScriptedServer]:
    """A local HTTP server answering as each test scripts it; no proxy in between."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with scripted_server() as scripted:
        yield scripted


@pytest.fixture
def browser_page():
    """A page of headless Chromium with a fresh profile (tests/helpers/browser.py)."""
    with browser.page() as page:
        yield page
