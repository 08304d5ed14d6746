"""Shared fixtures: the real config shrunk for speed, tiny synthetic data, an isolated store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from bench.sandbox import copy_project
from pipeline import config, preprocess

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


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """4 train and 3 test 28x28 uint8 images with labels 0-9, as mnist.npz holds them."""
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
            "y_train": np.array([0, 9, 3, 7], dtype=np.uint8),
            "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
            "y_test": np.array([1, 2, 8], dtype=np.uint8)}


def break_deflate_stream(path: Path, member: str = "x_train.npy") -> None:
    """Make `member`'s compressed data start with a reserved deflate block type (BTYPE=11)."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, offset + 26)
    raw[offset + 30 + name_length + extra_length] |= 0b110
    path.write_bytes(bytes(raw))


def write_prepared(folder: Path, train: int = 400, test: int = 100) -> Path:
    """A prepared-arrays folder, as the preprocess stage writes it, of synthetic digits."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synthetic_digits(train, seed=1)
    x_test, y_test = synthetic_digits(test, seed=2)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key, array in arrays.items():
        np.save(folder / preprocess.FILES[key], array)
    meta = {"fingerprint": "synthetic", "source": "tests", "train_samples": train,
            "test_samples": test}
    (folder / preprocess.META).write_text(json.dumps(meta))
    return folder


def sh(cwd: Path, env: dict, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


class Project:
    """A copy of this project in a git repo of its own, and its MLflow store."""

    def __init__(self, path: Path, env: dict) -> None:
        self.path, self.env = path, env

    def sh(self, *cmd: str) -> str:
        return sh(self.path, self.env, *cmd)

    def runs(self):
        client = MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")
        return client, client.search_runs(
            [client.get_experiment_by_name("mnist").experiment_id], order_by=["start_time"])


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Project:
    """This project's files in a fresh git repo, after `dvc exp run -S train.epochs=1` on real
    MNIST (from MNIST_SOURCE when set). Shared by the end-to-end and UI tests."""
    path = tmp_path_factory.mktemp("e2e") / "project"
    proj = Project(path, copy_project(path))
    proj.output = proj.sh("dvc", "exp", "run", "-S", "train.epochs=1")
    return proj


def kill_where(started_here: Callable[[Path], bool]) -> None:
    """SIGKILL every process whose /proc entry `started_here` picks (Linux); one that ends
    meanwhile, or is not ours to read, is passed over."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if started_here(proc):
                    os.kill(int(proc.name), signal.SIGKILL)


def stop_processes_in(folder: Path) -> None:
    """Kill every process still running in `folder`: DVC's queue workers can outlive the
    test that started them, and even `dvc queue stop`."""
    def inside(proc: Path) -> bool:
        cwd = (proc / "cwd").resolve(strict=True)
        return cwd == folder or folder in cwd.parents

    kill_where(inside)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, where every server a test starts listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str, timeout: float = 5) -> bool:
    """Whether an HTTP server answers at `url` (any status but an error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False
