"""Jobs done once: the FINISHED run of a job key (`pipeline.config.jobs`) found with one query,
counted by the sweep that asks for the job again, and the runs of a key done twice marked.

Every training run carries its key as the tag `job_key`, whoever started it (a sweep, `dvc
repro`, `dvc exp run`), on the project's store or the team's server. A run is reused only if
it FINISHED with its whole record: the weights' digest, the data's fingerprint and the test
metrics (a `dvc repro` run FINISHED by train but never evaluated has none). Of runs of one key
the first started is the one reused; where two sweeps ran a job at once, the others are tagged
`duplicate_of` it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel, Run
from mlflow.exceptions import MlflowException

from pipeline.tracking import names, runs, store

WHOLE = (names.WEIGHTS, names.FINGERPRINT)  # tags a reusable run has, with TEST_ACCURACY
KERAS_FILE = "data/model.keras"  # in a logged Keras model's files (`mlflow.keras`)
SEARCHED = 100  # runs of one key looked at: more than two sweeps racing would make


@dataclass(frozen=True)
class Done:
    """A FINISHED run of a job, reusable in its place."""

    run_id: str
    name: str
    ended: datetime
    val_accuracy: float | None
    model_uri: str  # its logged model, `models:/m-...`
    model_files: str  # where that model's files are (its `data/model.keras`)
    weights: str  # the weights' digest

    def line(self, job: str) -> str:
        when = self.ended.astimezone().strftime("%Y-%m-%d %H:%M")
        return f"reusing run {self.run_id} for {job} (finished {when})"


def _whole(run: Run) -> bool:
    return all(run.data.tags.get(tag) for tag in WHOLE) and (
        names.TEST_ACCURACY in run.data.metrics
    )


def _finished(experiment_id: str, key: str) -> list[Run]:
    """The FINISHED runs of `key` with their whole record, the first started first."""
    runs = store.connect().search_runs(
        [experiment_id],
        f"attributes.status = 'FINISHED' and tags.{names.JOB_KEY} = '{key}'",
        order_by=["attributes.start_time ASC"],
        max_results=SEARCHED,
    )
    return [run for run in runs if _whole(run)]


def find(experiment: str, key: str) -> Done | None:
    """The run to reuse for a job of `key` in `experiment`, or None."""
    try:
        with store.lock():  # the first call of a process may create the store
            client = store.connect()
            found = client.get_experiment_by_name(experiment)
        for run in _finished(found.experiment_id, key) if found else []:
            models = client.search_logged_models(
                [run.info.experiment_id], f"source_run_id = '{run.info.run_id}'", max_results=1
            )
            if models:  # a run whose model MLflow 3 did not log (an older one) is not whole
                return _done(run, models[0])
    except MlflowException as err:  # before the job's run opens: said as that would say it
        raise runs.unopened(experiment, None, err) from None
    return None


def model_uri(run_id: str) -> str | None:
    """The `models:/` URI of the model run `run_id` logged, None if none: registered by its
    `runs:/` URI, MLflow 3 warns that the run has no such artifact, and looks it up so."""
    client = store.connect()
    run = client.get_run(run_id)
    found = client.search_logged_models(
        [run.info.experiment_id], f"source_run_id = '{run_id}'", max_results=1
    )
    return found[0].model_uri if found else None


def _done(run: Run, model: LoggedModel) -> Done:
    ended = datetime.fromtimestamp((run.info.end_time or run.info.start_time) / 1000, UTC)
    return Done(
        run.info.run_id, run.info.run_name or "", ended, run.data.metrics.get(names.VAL_ACCURACY),
        model.model_uri, model.artifact_location, run.data.tags[names.WEIGHTS],
    )  # fmt: skip


@contextmanager
def fetched(done: Done, artifact: str) -> Iterator[Path]:
    """A reused run's `artifact` (a file or a folder; `KERAS_FILE`: its logged model's
    `.keras` file), downloaded into a temporary folder that is gone afterwards."""
    where = (
        {"artifact_uri": f"{done.model_files}/{KERAS_FILE}"}
        if artifact == KERAS_FILE
        else {"run_id": done.run_id, "artifact_path": artifact}
    )
    store.connect()
    with tempfile.TemporaryDirectory() as folder:
        yield Path(mlflow.artifacts.download_artifacts(**where, dst_path=folder))


def count_reused(parent_id: str, done: Done, job: str) -> None:
    """Make `done` one of sweep `parent_id`'s jobs, in place of `job`, without rerunning it."""
    tag = f"{names.REUSED_PREFIX}{done.run_id}"
    store.connect().set_tag(parent_id, tag, job[: store.MAX_TAG] or done.name)


def reused_runs(parent_tags: dict[str, str]) -> list[str]:
    """The ids of the runs a sweep's parent counts as reused jobs."""
    return [
        tag.removeprefix(names.REUSED_PREFIX)
        for tag in parent_tags
        if tag.startswith(names.REUSED_PREFIX)
    ]


def mark_duplicates(run_id: str) -> str | None:
    """After run `run_id` FINISHED: if its key was done by a run started before it, tag it
    `duplicate_of` that run and return that run's id. Any later run of the key is tagged too,
    whichever of the racing runs ends last."""
    client = store.connect()
    run = client.get_run(run_id)
    key = run.data.tags.get(names.JOB_KEY)
    if not key:
        return None
    done = _finished(run.info.experiment_id, key)
    if not done:
        return None
    first = done[0].info.run_id
    for later in done[1:]:
        if later.data.tags.get(names.DUPLICATE_OF) != first:
            client.set_tag(later.info.run_id, names.DUPLICATE_OF, first)
    return first if first != run_id else None


def registered(run_id: str) -> str | None:
    """The model version registered from run `run_id` already (`mnist version 1`), if
    any."""
    found = store.connect().search_model_versions(f"run_id = '{run_id}'")
    return f"{found[0].name} version {found[0].version}" if found else None
