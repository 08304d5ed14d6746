"""A run's lifecycle across stages: opened or resumed, ended FINISHED, FAILED or KILLED on
the way out, and the runs a dead process left RUNNING marked KILLED.

Where the store cannot be told how a run ended (it is down, or hangs), MLflow's active run is
cleared all the same, so the next job starts clean and MLflow's exit handler never ends a
dead run FINISHED; the end is kept and delivered later (`pipeline.tracking.ends`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING as SYSTEM_METRICS
from mlflow.exceptions import MlflowException

from pipeline import Stopped
from pipeline.common import files
from pipeline.tracking import ends, names
from pipeline.tracking.store import MAX_TAG, TrackingError, connect, experiment_id, lock, uri, why

log = logging.getLogger(__name__)

KILLED = "KILLED"


@contextmanager
def start(
    experiment: str,
    run_id: str | None = None,
    *,
    parent_id: str | None = None,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    system_metrics: bool = False,
) -> Iterator[str]:
    """Open a new run in `experiment` (a child of `parent_id` if given), or resume `run_id`;
    yield its id; with `system_metrics`, MLflow's (`system/...`) until it ends, unless
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING says otherwise.

    The run ends FINISHED; FAILED with the error recorded in the `error` tag; or KILLED on
    Ctrl-C or SIGTERM. Runs of this machine left RUNNING by a process that died (SIGKILL)
    are marked KILLED first.
    """
    watch = None if not system_metrics or SYSTEM_METRICS.defined else True  # None: as it says
    new = {"run_name": name, "parent_run_id": parent_id, "tags": tags or {}}
    active = _open(experiment, run_id, new, watch)
    try:
        yield active.info.run_id
    except BaseException as err:
        status = KILLED if isinstance(err, KeyboardInterrupt | Stopped) else "FAILED"
        _end(status, f"{type(err).__name__}: {err}", quick=isinstance(err, MlflowException))
        if isinstance(err, MlflowException):
            raise TrackingError(
                f"the MLflow store {uri()} failed during run {active.info.run_id}: {why(err)}"
            ) from None
        raise
    _end("FINISHED")


def find(experiment: str, tags: dict[str, str]) -> str | None:
    """The id of the latest FINISHED run of `experiment` that has all of `tags`, or None."""
    with lock():
        client = connect()
        found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    hits = client.search_runs(
        [found.experiment_id],
        f"attributes.status = 'FINISHED' and {query}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return hits[0].info.run_id if hits else None


def _open(experiment: str, run_id: str | None, new: dict, watch: bool | None) -> mlflow.ActiveRun:
    if run_id is None:
        # An inherited MLFLOW_RUN_ID would make start_run resume someone else's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        with lock():
            client = connect()
            ends.deliver(client)
            if run_id:
                return mlflow.start_run(run_id=run_id, tags=owner(), log_system_metrics=watch)
            found = experiment_id(client, experiment)
            end_orphans(client, found)
            new = new | {"tags": owner() | new["tags"]}
            return mlflow.start_run(experiment_id=found, log_system_metrics=watch, **new)
    except MlflowException as err:
        raise unopened(experiment, run_id, err) from None


def unopened(experiment: str, run_id: str | None, err: MlflowException) -> TrackingError:
    """The error for a store that failed as a run was about to open: what, where, and why."""
    what = f"run {run_id}" if run_id else f"a run in experiment {experiment!r}"
    hints = []
    if uri().startswith(("http://", "https://")):
        hints.append(
            "is the server up, and MLFLOW_TRACKING_URI right? Unset it to use the "
            "project's own store"
        )
    if run_id:
        hints.append(
            "the model was trained against another store, or the store was reset: "
            "retrain with `dvc repro -f train`, or `dvc exp run --no-run-cache`"
        )
    hint = f" ({'; or '.join(hints)})" if hints else ""
    return TrackingError(f"cannot open {what} in the MLflow store {uri()}: {why(err)}" + hint)


def _end(status: str, error: str | None = None, *, quick: bool = False) -> None:
    """End the active run `status`, `error` in its `error` tag; `quick`: the store has just
    failed after its retries, so try once, not a second round. MLflow's active run is cleared
    even where the store fails; the end is then kept for later (`keep`)."""
    active = mlflow.active_run()
    if active is None:  # ended already, inside the block
        return
    run_id = active.info.run_id
    try:
        with ends.quick() if quick else contextlib.nullcontext():
            if error:
                mlflow.set_tag(names.ERROR, error[:MAX_TAG])
            mlflow.end_run(status)
        return
    except MlflowException as store_err:
        failure = why(store_err)
    # MLflow pops its active run before it asks the store: where set_tag failed, the run is
    # still active, and this clears it (the store, tried once, may fail again).
    if (active := mlflow.active_run()) and active.info.run_id == run_id:
        with ends.quick(), contextlib.suppress(MlflowException):
            mlflow.end_run(status)
    ends.keep(run_id, status, error, failure)


def owner() -> dict[str, str]:
    """Tags naming the process that holds a run open (and its Ray node, in a Ray worker)."""
    tags = {names.OWNER_HOST: socket.gethostname(), names.OWNER_PID: str(os.getpid())}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        tags[names.RAY_NODE] = ray.util.get_node_ip_address()
    return tags


def end_orphans(client: MlflowClient, experiment: str) -> list[str]:
    """Mark KILLED the runs of experiment id `experiment` that a process of this machine left
    RUNNING when it died without a chance to end them (SIGKILL, a power cut); return their
    ids. Runs of other machines, or with no owner recorded, are left as they are."""
    host = socket.gethostname()
    ended = []
    for run in client.search_runs(
        [experiment],
        f"attributes.status = 'RUNNING' and tags.`pipeline.host` = '{host}'",
        max_results=1000,
    ):
        pid = run.data.tags.get(names.OWNER_PID, "")
        if pid.isdigit() and not files.alive(int(pid)):
            died = (
                f"its process ({pid} on {host}) died without ending the run, killed by "
                "SIGKILL or a crash"
            )
            ends.mark(client, run.info.run_id, KILLED, died)
            ended.append(run.info.run_id)
    if ended:
        log.warning(
            "marked KILLED %d run(s) left RUNNING by a process that died: %s",
            len(ended),
            ", ".join(ended),
        )
    return ended
