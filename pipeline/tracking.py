"""All MLflow code: where runs go, their lifecycle across stages, and what they hold.

The store is `MLFLOW_TRACKING_URI` if set, else `<project root>/mlflow.db` (SQLite) with
artifacts in `<project root>/mlartifacts`. The project root is `DVC_ROOT` (set by DVC, also
in `dvc exp` queue copies, which must write to the one real store) or the working directory.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from mlflow.utils.time import get_current_time_millis

from pipeline import PipelineError, Stopped, config, files

log = logging.getLogger(__name__)

# A tracking server that is down or stops answering fails a stage within about 10 s (refused)
# or 90 s (no answer), not MLflow's default of several minutes of retries. Variables the
# user sets win.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
for _name, _value in HTTP_LIMITS.items():
    os.environ.setdefault(_name, _value)

MODEL_NAME = "model"
LOCK_TIMEOUT_S = 120
_MAX_TAG = 5000
_MAX_NOTE = 8000  # MLflow refuses longer tag values


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
    on a fresh file, MLflow's schema creation races and can leave a broken database. Alias
    decisions in the registry take it too."""
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
def start(experiment: str, run_id: str | None = None, *, parent_id: str | None = None,
          name: str | None = None, tags: dict[str, str] | None = None) -> Iterator[str]:
    """Open a new run in `experiment` (a child of `parent_id` if given), or resume `run_id`;
    yield its id.

    The run ends FINISHED; FAILED with the error recorded in the `error` tag; or KILLED on
    Ctrl-C or SIGTERM. Runs of this machine left RUNNING by a process that died (SIGKILL)
    are marked KILLED first.
    """
    mlflow.set_tracking_uri(uri())
    if run_id is None:
        # An inherited MLFLOW_RUN_ID would make start_run resume someone else's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        with _store_lock():
            if run_id:
                active = mlflow.start_run(run_id=run_id, tags=_owner())
            else:
                experiment_id = _experiment_id(experiment)
                end_orphans(experiment_id)
                active = mlflow.start_run(experiment_id=experiment_id, run_name=name,
                                          parent_run_id=parent_id, tags=_owner() | (tags or {}))
    except MlflowException as err:
        what = f"run {run_id}" if run_id else f"a run in experiment {experiment!r}"
        hints = []
        if uri().startswith(("http://", "https://")):
            hints.append("is the server up, and MLFLOW_TRACKING_URI right? Unset it to use the "
                         "project's own store")
        if run_id:
            hints.append("the model was trained against another store, or the store was "
                         "reset: retrain with `dvc repro -f train`, or `dvc exp run "
                         "--no-run-cache`")
        hint = f" ({'; or '.join(hints)})" if hints else ""
        raise TrackingError(f"cannot open {what} in the MLflow store {uri()}: {err.message}"
                            + hint) from None
    try:
        yield active.info.run_id
    except BaseException as err:
        _end(err)
        if isinstance(err, MlflowException):
            raise TrackingError(f"the MLflow store {uri()} failed during run "
                                f"{active.info.run_id}: {err.message}") from None
        raise
    mlflow.end_run()


def _end(err: BaseException) -> None:
    """End the active run KILLED (Ctrl-C, SIGTERM) or FAILED, the error in its `error` tag.
    If the store itself is what failed, say so and leave the run: a later start on this
    machine marks it KILLED (`end_orphans`)."""
    status = KILLED if isinstance(err, KeyboardInterrupt | Stopped) else "FAILED"
    try:
        mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:_MAX_TAG])
        mlflow.end_run(status)
    except MlflowException as store_err:
        log.warning("could not mark the run %s in %s: %s", status, uri(), store_err.message)


KILLED = "KILLED"


def _owner() -> dict[str, str]:
    """Tags naming the process that holds a run open (and its Ray node, in a Ray worker)."""
    tags = {"pipeline.host": socket.gethostname(), "pipeline.pid": str(os.getpid())}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        tags["pipeline.ray_node"] = ray.util.get_node_ip_address()
    return tags


def end_orphans(experiment_id: str) -> list[str]:
    """Mark KILLED the runs that a process of this machine left RUNNING when it died without
    a chance to end them (SIGKILL, a power cut); return their ids. Runs of other machines,
    or with no owner recorded, are left as they are."""
    client = MlflowClient()
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING' and "
                                  f"tags.`pipeline.host` = '{host}'", max_results=1000):
        pid = run.data.tags.get("pipeline.pid", "")
        if pid.isdigit() and not files.alive(int(pid)):
            client.set_tag(run.info.run_id, "error", f"its process ({pid} on {host}) died "
                           "without ending the run, killed by SIGKILL or a crash")
            client.set_terminated(run.info.run_id, KILLED)
            ended.append(run.info.run_id)
    if ended:
        log.warning("marked KILLED %d run(s) left RUNNING by a process that died: %s",
                    len(ended), ", ".join(ended))
    return ended


# A sweep's parent run is made with the client, never made active: its jobs open their own
# runs under it, in this process (Hydra's basic launcher) or in others.
SWEEP_TAG = "sweep"  # "parent" on a sweep's parent run
BEST_TAG = "best_in_sweep"  # "true" on the child with the highest validation accuracy


def open_sweep(experiment: str, name: str, params: dict[str, str], tags: dict[str, str]) -> str:
    """Create the store (once, before any job fans out) and a sweep's parent run; its id."""
    mlflow.set_tracking_uri(uri())
    client = MlflowClient()
    try:
        with _store_lock():
            experiment_id = _experiment_id(experiment)
            end_orphans(experiment_id)
            parent = client.create_run(experiment_id, run_name=name[:250],
                                       tags={SWEEP_TAG: "parent", **_owner(), **tags})
        _open_sweeps.append(parent.info.run_id)
        client.log_batch(parent.info.run_id, params=[
            Param(key, str(value)[:_MAX_TAG]) for key, value in params.items()])
    except MlflowException as err:
        raise TrackingError(f"cannot open a sweep run in experiment {experiment!r} in the "
                            f"MLflow store {uri()}: {err.message}") from None
    return parent.info.run_id


def latest_sweep(experiment: str) -> str:
    """The id of the newest sweep parent run in `experiment`."""
    mlflow.set_tracking_uri(uri())
    found = mlflow.search_runs(experiment_names=[experiment], max_results=1,
                               filter_string=f"tags.{SWEEP_TAG} = 'parent'",
                               order_by=["attributes.start_time DESC"])
    if found.empty:
        raise TrackingError(f"no sweep in experiment {experiment!r} of {uri()}: run one with "
                            "`python -m pipeline.sweep -m train.epochs=5,10`")
    return str(found["run_id"].iloc[0])


def sweep_runs(parent_id: str) -> tuple[dict[str, str], pd.DataFrame]:
    """A sweep parent's tags, and its child runs as `mlflow.search_runs` lists them."""
    mlflow.set_tracking_uri(uri())
    try:
        parent = MlflowClient().get_run(parent_id)
    except MlflowException as err:
        raise TrackingError(f"no run {parent_id} in {uri()}: {err.message}") from None
    children = mlflow.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                                  order_by=["attributes.start_time ASC"])
    return parent.data.tags, children


def publish_sweep(parent_id: str, best_id: str | None, metrics: dict[str, float],
                  artifacts: list[Path], note: str) -> None:
    """Put a sweep's report on its parent run (the note is the run's description in the UI)
    and tag the best child."""
    client = MlflowClient(uri())
    if best_id:
        client.set_tag(best_id, BEST_TAG, "true")
        client.set_tag(parent_id, "best_run_id", best_id)
    client.log_batch(parent_id, metrics=[Metric(key, value, get_current_time_millis(), 0)
                                         for key, value in metrics.items()])
    client.set_tag(parent_id, "mlflow.note.content", note[:_MAX_NOTE])
    for path in artifacts:
        client.log_artifact(parent_id, str(path))


def end_sweep(parent_id: str, status: str) -> None:
    """End a sweep's parent run FINISHED, FAILED or KILLED."""
    MlflowClient(uri()).set_terminated(parent_id, status)
    if parent_id in _open_sweeps:
        _open_sweeps.remove(parent_id)


def end_open_sweeps(status: str) -> None:
    """End the sweeps this process opened and has not ended (it is being stopped)."""
    for parent_id in list(_open_sweeps):
        end_sweep(parent_id, status)


_open_sweeps: list[str] = []


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
    """The dataset as a run input, and its content fingerprint as a tag.

    The dataset's digest is the fingerprint's first 8 digits (the sha256 of the raw arrays the
    prepared ones are made from): MLflow's own digest would copy the whole training set to
    hash its first 10,000 values.
    """
    with warnings.catch_warnings():
        # MLflow registers its local source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = mlflow.data.from_numpy(x, targets=y, source=source, name=f"mnist-{context}",
                                         digest=meta["fingerprint"][:8])
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context=context)
            break
        except MlflowException as err:
            # MLflow's SQL store looks the dataset up, then inserts it: jobs starting together
            # can all miss it, and all inserts but one then break the unique key. Another try
            # finds the one that was inserted and links it to this run.
            if attempt == 2 or not _duplicate_key(err):
                raise
    mlflow.set_tag("data_fingerprint", meta["fingerprint"])


def _duplicate_key(err: MlflowException) -> bool:
    message = str(err)
    return "duplicate key value" in message or "UNIQUE constraint failed" in message


def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    # Synchronous: MLflow's async logging saves 10 ms an epoch but its shutdown at the run's
    # end costs 0.85 s.
    mlflow.log_metrics(metrics, step=epoch)


def log_metrics(metrics: dict[str, float]) -> None:
    mlflow.log_metrics(metrics)


def log_artifact(path: Path) -> None:
    mlflow.log_artifact(str(path))


def log_artifacts(paths: list[Path], folder: str) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), folder)


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


CHAMPION = "champion"  # the registry alias of the version with the best validation accuracy


def register(name: str, model_uri: str, val_accuracy: float | None) -> tuple[int, bool]:
    """Make the logged model a new version of registered model `name`, linked to its run;
    move the `champion` alias to it only if its validation accuracy beats the champion's.
    Return the version and whether it is the champion now."""
    mlflow.set_tracking_uri(uri())
    client = MlflowClient()
    tags = {} if val_accuracy is None else {"val_accuracy": str(val_accuracy)}
    with _store_lock():  # one alias decision at a time, even from parallel jobs
        version = mlflow.register_model(model_uri, name, tags=tags)
        try:
            champion = client.get_model_version_by_alias(name, CHAMPION)
            best = float(champion.tags.get("val_accuracy", "-inf"))
        except MlflowException:  # no champion yet
            best = float("-inf")
        wins = val_accuracy is not None and val_accuracy > best
        if wins:
            client.set_registered_model_alias(name, CHAMPION, version.version)
    return int(version.version), wins


def load_model(model_uri: str) -> Any:
    """A Keras model from a `models:/` or `runs:/` URI in this project's store."""
    mlflow.set_tracking_uri(uri())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return mlflow.keras.load_model(model_uri)
    except MlflowException as err:
        raise TrackingError(f"cannot load {model_uri} from {uri()}: {err.message} (train one "
                            "with `dvc repro`, or pass a saved model: --model "
                            "models/model.keras)") from None


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
