"""The DVC queue as a sweep: the experiments `dvc queue start` runs from one commit are the
jobs of one sweep, under one parent run, with the same report as a Hydra sweep.

    dvc exp run --queue -S 'train.epochs=5,10' -S 'train.batch_size=64,128'
    dvc queue start -j 2

DVC runs each queued experiment in a copy of the repo (`.dvc/tmp/exps/...`, with `DVC_ROOT`
the repo and `DVC_EXP_NAME` the experiment's name). Its train stage opens its run as a child
of the queue's parent run for the experiments' baseline commit (`join`), made by the first;
its evaluate stage, once its run has ended, publishes the sweep report on that parent and ends
the parent FINISHED or FAILED when no job of it runs any more (`close`, through `python -m
pipeline.sweep.report PARENT --end`). More experiments queued on the same commit later join the
same sweep, and its report covers them all. A local file lock, not the store's, keeps two
starting jobs from making two parents: DVC's queue runs on this machine, whatever the store.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.tracking import names, reuse, runs, store

log = logging.getLogger(__name__)

LAUNCHER = "dvc-queue"  # the parent's `sweep_launcher`
EXP_NAME, BASELINE = "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"  # what DVC tells an experiment
LOCK = ".dvc/tmp/pipeline-queue.lock"  # in DVC_ROOT
FOLDER = "multirun/dvc-queue-{rev}"  # in DVC_ROOT: the report's files


def queued() -> bool:
    """Whether this process runs an experiment of the DVC queue (in one of its copies)."""
    root = os.environ.get("DVC_ROOT")
    if not (root and os.environ.get(EXP_NAME)):
        return False
    return Path.cwd().resolve().is_relative_to(Path(root).resolve() / ".dvc" / "tmp")


@contextmanager
def _locked() -> Iterator[None]:
    path = Path(os.environ["DVC_ROOT"]) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, timeout=store.LOCK_TIMEOUT_S):
        yield


def _query(rev: str) -> str:
    return f"tags.{names.LAUNCHER} = '{LAUNCHER}' and tags.{names.DVC_BASELINE} = '{rev}'"


def parent(experiment: str) -> str | None:
    """The queue's parent run for this experiment's baseline commit, if there is one."""
    client = store.connect()
    found = client.get_experiment_by_name(experiment)
    rev = os.environ.get(BASELINE, "")
    hits = client.search_runs(
        [found.experiment_id] if found else [],
        _query(rev),
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return hits[0].info.run_id if hits else None


def _parent(client: MlflowClient, experiment: str) -> str:
    """The queue's parent run for this experiment's baseline commit, RUNNING again, or a new
    one (take `_locked` around it). It has no owner: it outlives each job that joins it."""
    found = store.experiment_id(client, experiment)
    parent_id = parent(experiment)
    if parent_id is not None:
        client.update_run(parent_id, status="RUNNING")
        return parent_id
    rev = os.environ.get(BASELINE, "")
    folder = Path(os.environ["DVC_ROOT"]).resolve() / FOLDER.format(rev=rev[:12])
    marks = {names.SWEEP: "parent", names.LAUNCHER: LAUNCHER, names.DVC_BASELINE: rev}
    made = client.create_run(
        found, run_name=f"dvc queue on {rev[:7]}", tags=marks | {names.SWEEP_DIR: str(folder)}
    )
    log.info("a sweep of the DVC queue on %s: parent run %s", rev[:7], made.info.run_id)
    return made.info.run_id


def join(experiment: str, tags: dict[str, str]) -> str:
    """Open this experiment's run, with `tags`, as a child of the queue's parent run; its id,
    to resume. Under the lock `close` takes, so the parent never ends between the two."""
    try:
        with _locked(), store.lock():
            client = store.connect()
            parent_id = _parent(client, experiment)
            child = client.create_run(
                store.experiment_id(client, experiment),
                run_name=os.environ[EXP_NAME],
                tags=tags | runs.owner() | {names.PARENT: parent_id},
            )
    except MlflowException as err:
        raise runs.unopened(experiment, None, err) from None
    return child.info.run_id


def count_reused(experiment: str, done: reuse.Done) -> None:
    """Count a job done before as this experiment's job in the queue's sweep, and close it."""
    with _locked(), store.lock():
        parent_id = _parent(store.connect(), experiment)
        reuse.count_reused(parent_id, done, os.environ[EXP_NAME])
    _close(parent_id)


def pending(parent_id: str) -> int:
    """How many jobs of the sweep still run: RUNNING, or trained and not yet evaluated (a
    queued experiment's run is FINISHED between its train and evaluate stages)."""
    client = store.connect()
    experiment_id = client.get_run(parent_id).info.experiment_id
    jobs = client.search_runs([experiment_id], f"tags.{names.PARENT} = '{parent_id}'")
    return sum(
        job.info.status == "RUNNING"
        or (job.info.status == "FINISHED" and names.TEST_ACCURACY not in job.data.metrics)
        for job in jobs
    )


@contextmanager
def publishing_report(run_id: str | None, *, last_stage: bool) -> Iterator[None]:
    """Around a queued job's stage: once it ends (its `last_stage`, or any stage failing), the
    report of the sweep its run `run_id` belongs to is published, and the sweep ended if no
    job of it runs any more. A report that fails is a warning: the job's outputs and run
    stand. Nothing for `run_id` None (not a queued job)."""
    try:
        yield
    except BaseException:
        if run_id:
            _close(run_id)
        raise
    if run_id and last_stage:
        _close(run_id)


def _close(run_id: str) -> None:
    """Publish the report of the queue's sweep (`run_id`: it, or a job of it), and end it
    once no job of it runs."""
    try:
        tags = store.connect().get_run(run_id).data.tags
    except MlflowException as err:  # the store is away: the stage's own error says more
        log.warning("the queue's sweep report waits for the store (%s)", store.why(err))
        return
    parent_id = run_id if tags.get(names.LAUNCHER) == LAUNCHER else tags.get(names.PARENT)
    if not parent_id:
        return
    command = [sys.executable, "-m", "pipeline.sweep.report", parent_id, "--end"]
    with _locked():
        done = subprocess.run(command, check=False)
    if done.returncode:
        log.warning(
            "the queue's sweep report failed (see above): rerun `python -m "
            "pipeline.sweep.report %s --end` in %s",
            parent_id,
            os.environ["DVC_ROOT"],
        )
