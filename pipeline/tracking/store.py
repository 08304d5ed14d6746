"""Which MLflow store a call talks to.

The store is `MLFLOW_TRACKING_URI` if set, else `<project root>/mlflow.db` (SQLite) with
artifacts in `<project root>/mlartifacts`. The project root is `DVC_ROOT` (set by DVC, also
in `dvc exp` queue copies, which must write to the one real store) or the working directory.
`connect()` is the one place that points MLflow at it; every other call goes through it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import mlflow
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils import logging_utils
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import Pool

from pipeline import PipelineError
from pipeline.common import project, retry, stops
from pipeline.tracking import names

LOCK_TIMEOUT_S = 120
TRAINING = "custom_model_development"  # the experiment kind of model training
MAX_TAG = 5000  # MLflow refuses longer tag values
ATTEMPTS = 3  # of a write that parallel jobs can race on (see duplicate_key)

T = TypeVar("T")


class TrackingError(PipelineError):
    """The tracking store cannot be reached or does not hold the expected run."""


def local_uri() -> str:
    """The project's own SQLite store, as an absolute path."""
    return f"sqlite:///{project.root() / 'mlflow.db'}"


def uri() -> str:
    """`MLFLOW_TRACKING_URI`, or the project's local store; never with credentials in it
    (`credentials_apart`)."""
    credentials_apart()
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def credentials_apart() -> None:
    """Move a user and password given in `MLFLOW_TRACKING_URI` (`http://user:pw@host`, which
    MLflow accepts) into MLFLOW_TRACKING_USERNAME and _PASSWORD, which MLflow reads for the
    same basic auth and never prints: the URI then goes into files, log lines, errors and
    MLflow's own "View run at" lines without them. Variables already set win."""
    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    parts = urlsplit(given)
    if "@" not in parts.netloc:
        return
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)
    os.environ["MLFLOW_TRACKING_URI"] = urlunsplit(parts._replace(netloc=host))


def connect() -> MlflowClient:
    """A client of the store `uri()` names, with MLflow's run and model functions pointed at
    the same store (they have no other way to be told). The first in a process creates a new
    store's tables: take `lock()` around it where parallel jobs may start."""
    target = uri()
    mlflow.set_tracking_uri(target)
    try:
        return _client(target)
    except SQLAlchemyError as err:  # a damaged file, or one that is not MLflow's
        cause = str(getattr(err, "orig", None) or err).splitlines()[0]
        path = target.removeprefix("sqlite:///")
        raise TrackingError(
            f"the MLflow store {target} cannot be read ({cause}): it is damaged, or not an "
            f"MLflow database. Move it aside (mv {path} {path}.damaged) and rerun to start a "
            "new store, or put back a copy you trust"
        ) from None


@functools.lru_cache(maxsize=4)
def _client(target: str) -> MlflowClient:
    """One client a store and process: making one costs tens of milliseconds, and a sweep that
    reuses its jobs asks a few times a job. A stop waits for its database connections in use."""
    if not event.contains(Pool, "checkout", stops.hold):
        event.listen(Pool, "checkout", stops.hold)
        event.listen(Pool, "checkin", stops.release)
    return MlflowClient(target)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if need be (take `lock()` around it), marked as
    model training: MLflow 3's UI opens an experiment without the mark in its GenAI view."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(names.EXPERIMENT_KIND) != TRAINING:  # made before the mark
            client.set_experiment_tag(experiment.experiment_id, names.EXPERIMENT_KIND, TRAINING)
        return experiment.experiment_id
    # Artifacts beside the local store, whoever creates the experiment; a server decides.
    location = (project.root() / "mlartifacts").as_uri() if uri() == local_uri() else None
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={names.EXPERIMENT_KIND: TRAINING}
        )
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
    held = FileLock(project.root() / "mlflow.db.lock", timeout=LOCK_TIMEOUT_S)
    try:
        with held:
            yield
    except Timeout:
        raise TrackingError(
            f"waited {LOCK_TIMEOUT_S} s for {held.lock_file}, held by another "
            "pipeline process; is one stuck?"
        ) from None


@contextmanager
def unprinted() -> Iterator[None]:
    """MLflow's own lines on stderr off in this block. Registering a model prints two with
    `print`, not a logger ("Registered model 'x' already exists...", "Created version '3'..."),
    where the pipeline says what it did in one line of its own."""
    stream = logging_utils.MLFLOW_LOGGING_STREAM
    was, stream.enabled = stream.enabled, False
    try:
        yield
    finally:
        stream.enabled = was


def why(err: MlflowException) -> str:
    """What went wrong with the store, in a few words where it is an outage (MLflow's own
    message is a paragraph of urllib3's), else MLflow's first line."""
    message = err.message
    if "Connection refused" in message:
        return "connection refused"
    if "Connection aborted" in message or "RemoteDisconnected" in message:
        return "the connection was cut"
    if "timed out" in message or "TimeoutError" in message:
        each = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "?")
        return f"no answer in {each} s; is the server stuck, or the network?"
    if "too many 5" in message:  # urllib3's ResponseError('too many 500 error responses')
        return "it answers with server errors; is its database up?"
    return message.splitlines()[0][:500]


def duplicate_key(err: MlflowException) -> bool:
    """Whether a write lost a race on a unique key. MLflow's SQL store looks a row up, then
    inserts it (a dataset, a registry alias): jobs writing together can all miss it, and all
    inserts but one then fail. Another try finds the row that won and goes on from there."""
    message = str(err)
    return "duplicate key value" in message or "UNIQUE constraint failed" in message


def racing(write: Callable[[], T]) -> T:
    """What `write()` returns, tried again (ATTEMPTS in all) while it loses a race on a unique
    key (`duplicate_key`); any other error, or the last, goes through."""
    return retry.call(write, attempts=ATTEMPTS, errors=MlflowException, retryable=duplicate_key)
