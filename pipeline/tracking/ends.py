"""Run ends the store could not take when they happened (it was down, or hung): each kept in a
private file of its own in `.mlflow-pending/`, and delivered by the next run or sweep this
project opens on the same store, with the time it really ended."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.common import files, project
from pipeline.tracking import names
from pipeline.tracking.store import MAX_TAG, connect, uri, why

log = logging.getLogger(__name__)

PENDING = ".mlflow-pending"  # in the project root
RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


@contextmanager
def quick() -> Iterator[None]:
    """MLflow's HTTP calls in this block try once: for a store that has just failed after
    all its retries."""
    saved = os.environ.get(RETRIES)
    os.environ[RETRIES] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(RETRIES, None)
        else:
            os.environ[RETRIES] = saved


def mark(
    client: MlflowClient,
    run_id: str,
    status: str,
    reason: str | None = None,
    end_time: int | None = None,
) -> None:
    """End run `run_id` `status` in the store, `reason` in its `error` tag, at `end_time` (ms
    since the epoch; now if None)."""
    if reason:
        client.set_tag(run_id, names.ERROR, reason[:MAX_TAG])
    client.set_terminated(run_id, status, end_time)


def terminate(run_id: str, status: str, reason: str | None = None) -> None:
    """End a run that is not MLflow's active run (a sweep's parent) `status`; where the
    store fails, keep the end for later (`keep`)."""
    try:
        mark(connect(), run_id, status, reason)
    except MlflowException as store_err:
        keep(run_id, status, reason, why(store_err))


def folder() -> Path:
    """Where the ends wait: `.mlflow-pending/` in the project root, beside mlflow.db."""
    return project.root() / PENDING


@dataclass(frozen=True)
class End:
    """How a run ended, as kept for a store that could not be told."""

    run_id: str
    store: str  # the URI, without credentials (`store.uri`)
    status: str  # FINISHED, FAILED or KILLED
    reason: str | None  # for its `error` tag
    end_time: int  # ms since the epoch, as MLflow keeps it


def keep(run_id: str, status: str, reason: str | None, failure: str) -> None:
    """Keep a run's end that the store could not take (private: it names the store) for the
    next run or sweep opened on this store to deliver (`deliver`)."""
    end = End(run_id, uri(), status, reason, int(time.time() * 1000))
    path = folder() / f"{run_id}.json"
    path.parent.mkdir(exist_ok=True)
    files.write_text(path, json.dumps(dataclasses.asdict(end), indent=2) + "\n", mode=0o600)
    log.warning(
        "could not mark the run %s %s in %s (%s): kept in %s, and marked as soon as a run or "
        "sweep of this project opens on that store",
        run_id,
        status,
        end.store,
        failure,
        path,
    )


def deliver(client: MlflowClient) -> list[str]:
    """Mark in the store the run ends kept for it (`keep`); return their ids.
    Those of runs the store no longer has are dropped; a store that fails raises, and they
    wait for the next time."""
    delivered: list[str] = []
    for path in sorted(folder().glob("*.json")):
        try:
            end = End(**json.loads(path.read_text()))
        except FileNotFoundError:  # delivered meanwhile by a parallel job
            continue
        if end.store != uri():
            continue
        try:
            mark(client, end.run_id, end.status, end.reason, end.end_time)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        path.unlink(missing_ok=True)
        delivered.append(end.run_id)
    if delivered:
        log.info(
            "marked %d run(s) as they ended while the store was away: %s",
            len(delivered),
            ", ".join(delivered),
        )
    return delivered
