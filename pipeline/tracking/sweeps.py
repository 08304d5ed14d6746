"""A sweep's parent run: opened before its first job, read by every job through the sweep's
record (`sweep.json` in the sweep's folder), given the report and ended after the last.

The parent run is made with the client, never made active: its jobs open their own runs under
it, in this process (Hydra's basic launcher) or in others (joblib, Ray, SLURM).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from pipeline.common import files
from pipeline.tracking import ends, names, reuse, runs, store

RECORD = "sweep.json"
MAX_NOTE = 8000  # MLflow refuses longer descriptions
_opening: list[str] = []  # the experiments this process began to open a sweep in


@dataclass(frozen=True)
class Sweep:
    """What a sweep's jobs need to know of it, kept in `sweep.json` in the sweep's folder."""

    parent_run_id: str
    experiment: str
    swept: list[str]  # the keys that take several values

    def write(self, folder: Path) -> None:
        files.write_text(folder / RECORD, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Sweep:
        return cls(**json.loads((folder / RECORD).read_text()))


def open_sweep(
    experiment: str, name: str, params: dict[str, str], swept: list[str], folder: Path
) -> Sweep:
    """Create the store (once, before any job fans out) and a sweep's parent run; write its
    record into `folder` and return it."""
    _opening.append(experiment)
    try:
        with store.lock():
            client = store.connect()
            ends.deliver(client)
            found = store.experiment_id(client, experiment)
            runs.end_orphans(client, found)
            parent = client.create_run(
                found,
                run_name=name[:250],
                tags={names.SWEEP: "parent", names.SWEEP_DIR: str(folder), **runs.owner()},
            )
        client.log_batch(
            parent.info.run_id,
            params=[Param(key, str(value)[: store.MAX_TAG]) for key, value in params.items()],
        )
    except MlflowException as err:
        raise store.TrackingError(
            f"cannot open a sweep run in experiment {experiment!r} in "
            f"the MLflow store {store.uri()}: {err.message}"
        ) from None
    sweep = Sweep(parent.info.run_id, experiment, swept)
    sweep.write(folder)
    return sweep


def latest(experiment: str) -> str:
    """The id of the newest sweep parent run in `experiment`."""
    store.connect()
    found = mlflow.search_runs(
        experiment_names=[experiment],
        max_results=1,
        filter_string=f"tags.{names.SWEEP} = 'parent'",
        order_by=["attributes.start_time DESC"],
    )
    if found.empty:
        raise store.TrackingError(
            f"no sweep in experiment {experiment!r} of {store.uri()}: "
            "run one with `python -m pipeline.sweep -m train.epochs=5,10`"
        )
    return str(found["run_id"].iloc[0])


def children(parent_id: str) -> tuple[dict[str, str], pd.DataFrame]:
    """A sweep parent's tags, and its jobs' runs as `mlflow.search_runs` lists them: its child
    runs, then the runs it reused (`reuse.count_reused`), with the column `reused`."""
    client = store.connect()
    try:
        parent = client.get_run(parent_id)
    except MlflowException as err:
        raise store.TrackingError(f"no run {parent_id} in {store.uri()}: {err.message}") from None

    def search(query: str) -> pd.DataFrame:
        return mlflow.search_runs(
            [parent.info.experiment_id], query, order_by=["attributes.start_time ASC"]
        )

    jobs = search(f"tags.{names.PARENT} = '{parent_id}'").assign(reused=False)
    if counted := reuse.reused_runs(parent.data.tags):
        again = search(f"attributes.run_id IN ({', '.join(map(repr, counted))})")
        tables = [table for table in (jobs, again.assign(reused=True)) if not table.empty]
        jobs = pd.concat(tables).drop_duplicates("run_id", ignore_index=True) if tables else jobs
    return parent.data.tags, jobs


def curves(run_ids: list[str], metric: str) -> dict[str, list[float]]:
    """Each run's `metric` per epoch (MLflow's step), in order of the epochs."""
    client = store.connect()
    return {
        run_id: [
            point.value
            for point in sorted(client.get_metric_history(run_id, metric), key=lambda p: p.step)
        ]
        for run_id in run_ids
    }


def publish(
    parent_id: str,
    best_id: str | None,
    metrics: dict[str, float],
    artifacts: list[Path],
    note: str,
) -> None:
    """Put a sweep's report on its parent run (the note is the run's description in the UI)
    and tag the best child."""
    client = store.connect()
    if best_id:
        client.set_tag(best_id, names.BEST_IN_SWEEP, "true")
        client.set_tag(parent_id, names.BEST_RUN_ID, best_id)
    client.log_batch(
        parent_id,
        metrics=[Metric(key, value, int(time.time() * 1000), 0) for key, value in metrics.items()],
    )
    client.set_tag(parent_id, names.NOTE, note[:MAX_NOTE])
    for path in artifacts:
        client.log_artifact(parent_id, str(path))


def annotate(metrics_by_run: dict[str, dict[str, float]]) -> None:
    """Metrics on finished child runs: each job gets its configuration's summary over seeds."""
    client = store.connect()
    now = int(time.time() * 1000)
    for run_id, metrics in metrics_by_run.items():
        client.log_batch(
            run_id, metrics=[Metric(key, value, now, 0) for key, value in metrics.items()]
        )


def end(parent_id: str, status: str) -> None:
    """End a sweep's parent run FINISHED, FAILED or KILLED (kept for later where the store
    fails: `ends.terminate`)."""
    ends.terminate(parent_id, status)


def end_own(status: str) -> list[str]:
    """End with `status` the sweeps this process opened and has not ended (it is being
    stopped), found by their owner tags; return their ids. None opened: no store asked."""
    if not _opening:
        return []
    client = store.connect()
    mine = " and ".join(
        f"tags.`{key}` = '{value}'" for key, value in runs.owner().items() if key != names.RAY_NODE
    )
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    running = client.search_runs(
        experiments, f"attributes.status = 'RUNNING' and tags.{names.SWEEP} = 'parent' and {mine}"
    )
    for run in running:
        end(run.info.run_id, status)
    return [run.info.run_id for run in running]
