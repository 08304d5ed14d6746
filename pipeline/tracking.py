"""All MLflow code: where runs go, their lifecycle across stages, and what they hold.

The store is `MLFLOW_TRACKING_URI` if set, else `<project root>/mlflow.db` (SQLite) with
artifacts in `<project root>/mlartifacts`. The project root is `DVC_ROOT` (set by DVC, also
in `dvc exp` queue copies, which must write to the one real store) or the working directory.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from filelock import FileLock, Timeout
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline import PipelineError, config

log = logging.getLogger(__name__)

MODEL_NAME = "model"
LOCK_TIMEOUT_S = 120
_MAX_TAG = 5000


class TrackingError(PipelineError):
    """The tracking store cannot be reached or does not hold the expected run."""


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def local_uri() -> str:
    """The project's own SQLite store, as an absolute path."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def uri() -> str:
    """`MLFLOW_TRACKING_URI`, or the project's local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def _experiment_id(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Artifacts beside the local store, whichever folder (a DVC queue copy, a Hydra job
    # folder) creates the experiment; a server decides for itself.
    location = (project_root() / "mlartifacts").as_uri() if uri() == local_uri() else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel job
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def _store_lock() -> Iterator[None]:
    """Serialise opening the local SQLite store across processes (parallel `dvc exp` jobs):
    on a fresh file, MLflow's schema creation races and can leave a broken database."""
    if uri() != local_uri():
        yield
        return
    lock = FileLock(project_root() / "mlflow.db.lock", timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            yield
    except Timeout:
        raise TrackingError(f"waited {LOCK_TIMEOUT_S} s for {lock.lock_file}, held by another "
                            "pipeline process; is one stuck?") from None


@contextmanager
def start(experiment: str, run_id: str | None = None) -> Iterator[str]:
    """Open a new run in `experiment`, or resume `run_id`; yield its id.

    The run ends FINISHED, or FAILED with the error recorded in the `error` tag.
    """
    mlflow.set_tracking_uri(uri())
    if run_id is None:
        # An inherited MLFLOW_RUN_ID would make start_run resume someone else's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        with _store_lock():
            if run_id:
                active = mlflow.start_run(run_id=run_id)
            else:
                active = mlflow.start_run(experiment_id=_experiment_id(experiment))
    except MlflowException as err:
        what = f"run {run_id}" if run_id else f"a run in experiment {experiment!r}"
        raise TrackingError(f"cannot open {what} in the MLflow store {uri()}: {err.message}"
                            + (" (the model was trained against another store, or the "
                               "store was reset: retrain with `dvc repro -f train`, or "
                               "`dvc exp run --no-run-cache`)" if run_id else "")) from None
    with active:
        try:
            yield active.info.run_id
        except BaseException as err:
            mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:_MAX_TAG])
            raise


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


# What defines a run besides params.yaml; dvc.lock, params.yaml and the stage outputs change
# on every run, so they would make every run look dirty.
SOURCE_PATHS = ("pipeline", "conf", "dvc.yaml", "pyproject.toml", "constraints.txt")


def source_tags() -> dict[str, str]:
    """Git commit, uncommitted code changes, and the DVC experiment this run belongs to."""
    tags = {}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS)
        tags["git_dirty"] = str(bool(changed))
    for env, tag in (("DVC_EXP_NAME", "dvc_exp_name"),
                     ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def log_config(cfg: config.Config) -> None:
    """The whole resolved config: flat params, the config file, and source tags."""
    mlflow.log_params(config.flatten(cfg))
    mlflow.log_dict(config.to_dict(cfg), "config.yaml")
    mlflow.set_tags(source_tags())


def log_data(x: np.ndarray, y: np.ndarray, meta: dict, source: str, context: str) -> None:
    """The dataset as a run input (with MLflow's digest), and its content fingerprint."""
    with warnings.catch_warnings():
        # MLflow registers its local source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = mlflow.data.from_numpy(x, targets=y, source=source, name=f"mnist-{context}")
    mlflow.log_input(dataset, context=context)
    mlflow.set_tag("data_fingerprint", meta["fingerprint"])


def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    mlflow.log_metrics(metrics, step=epoch)


def log_metrics(metrics: dict[str, float]) -> None:
    mlflow.log_metrics(metrics)


def log_artifact(path: Path) -> None:
    mlflow.log_artifact(str(path))


def log_dict(data: Any, name: str) -> None:
    mlflow.log_dict(data, name)


def _requirements() -> list[str]:
    # Given explicitly: MLflow's own inference costs about 5 s a model.
    found = []
    for dist in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def log_model(model: Any) -> str:
    """Log the Keras model with its signature; return its `models:/` URI.

    No input example: with Keras 3 it crashes log_model (mlflow/mlflow#16183, still open).
    """
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.input_shape[-1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]))
    info = mlflow.keras.log_model(model, name=MODEL_NAME, signature=signature,
                                  pip_requirements=_requirements())
    return info.model_uri
