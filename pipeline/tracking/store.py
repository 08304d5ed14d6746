"""Which MLflow store a call talks to, and a run's lifecycle across stages.

The store is `MLFLOW_TRACKING_URI` if set, else `<project root>/mlflow.db` (SQLite) with
artifacts in `<project root>/mlartifacts`. The project root is `DVC_ROOT` (set by DVC, also
in `dvc exp` queue copies, which must write to the one real store) or the working directory.
`connect()` is the one place that points MLflow at it; every other call goes through it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline import PipelineError, Stopped, files

log = logging.getLogger(__name__)

KILLED = "KILLED"
LOCK_TIMEOUT_S = 120
MAX_TAG = 5000  # MLflow refuses longer tag values


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


def connect() -> MlflowClient:
    """A client of the store `uri()` names, with MLflow's run and model functions pointed at
    the same store (they have no other way to be told). The first in a process creates a new
    store's tables: take `lock()` around it where parallel jobs may start."""
    mlflow.set_tracking_uri(uri())
    return MlflowClient(uri())


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if need be (take `lock()` around it)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Artifacts beside the local store, whichever folder (a DVC queue copy, a Hydra job
    # folder) creates the experiment; a server decides for itself.
    location = (project_root() / "mlartifacts").as_uri() if uri() == local_uri() else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel job
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def lock() -> Iterator[None]:
    """Serialise opening the local SQLite store across processes (parallel `dvc exp` jobs):
    on a fresh file, MLflow's schema creation races and can leave a broken database. Alias
    decisions in the registry take it too."""
    if uri() != local_uri():
        yield
        return
    held = FileLock(project_root() / "mlflow.db.lock", timeout=LOCK_TIMEOUT_S)
    try:
        with held:
            yield
    except Timeout:
        raise TrackingError(f"waited {LOCK_TIMEOUT_S} s for {held.lock_file}, held by another "
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
    if run_id is None:
        # An inherited MLFLOW_RUN_ID would make start_run resume someone else's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        with lock():
            client = connect()
            if run_id:
                active = mlflow.start_run(run_id=run_id, tags=owner())
            else:
                found = experiment_id(client, experiment)
                end_orphans(client, found)
                active = mlflow.start_run(experiment_id=found, run_name=name,
                                          parent_run_id=parent_id, tags=owner() | (tags or {}))
    except MlflowException as err:
        raise _unopened(experiment, run_id, err) from None
    try:
        yield active.info.run_id
    except BaseException as err:
        _end(err)
        if isinstance(err, MlflowException):
            raise TrackingError(f"the MLflow store {uri()} failed during run "
                                f"{active.info.run_id}: {err.message}") from None
        raise
    mlflow.end_run()


def _unopened(experiment: str, run_id: str | None, err: MlflowException) -> TrackingError:
    what = f"run {run_id}" if run_id else f"a run in experiment {experiment!r}"
    hints = []
    if uri().startswith(("http://", "https://")):
        hints.append("is the server up, and MLFLOW_TRACKING_URI right? Unset it to use the "
                     "project's own store")
    if run_id:
        hints.append("the model was trained against another store, or the store was reset: "
                     "retrain with `dvc repro -f train`, or `dvc exp run --no-run-cache`")
    hint = f" ({'; or '.join(hints)})" if hints else ""
    return TrackingError(f"cannot open {what} in the MLflow store {uri()}: {err.message}"
                         + hint)


def _end(err: BaseException) -> None:
    """End the active run KILLED (Ctrl-C, SIGTERM) or FAILED, the error in its `error` tag.
    If the store itself is what failed, say so and leave the run: a later start on this
    machine marks it KILLED (`end_orphans`)."""
    status = KILLED if isinstance(err, KeyboardInterrupt | Stopped) else "FAILED"
    try:
        mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:MAX_TAG])
        mlflow.end_run(status)
    except MlflowException as store_err:
        log.warning("could not mark the run %s in %s: %s", status, uri(), store_err.message)


def owner() -> dict[str, str]:
    """Tags naming the process that holds a run open (and its Ray node, in a Ray worker)."""
    tags = {"pipeline.host": socket.gethostname(), "pipeline.pid": str(os.getpid())}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        tags["pipeline.ray_node"] = ray.util.get_node_ip_address()
    return tags


def end_orphans(client: MlflowClient, experiment: str) -> list[str]:
    """Mark KILLED the runs of experiment id `experiment` that a process of this machine left
    RUNNING when it died without a chance to end them (SIGKILL, a power cut); return their
    ids. Runs of other machines, or with no owner recorded, are left as they are."""
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([experiment], "attributes.status = 'RUNNING' and "
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
