"""A finished run's record read back, to rebuild it (`pipeline.reproduce`): which run a
reference names, its provenance, its per-epoch metrics; and the verdict written beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipeline.tracking import names, record
from pipeline.tracking.store import TrackingError, connect, lock, uri

REQUIRED = {
    names.COMMIT: "git commit",
    names.DIRTY: "git_dirty tag",
    names.WEIGHTS: "weights digest",
    names.FINGERPRINT: "data fingerprint",
}
MODEL_REF = re.compile(r"models:/(?P<name>[^/@]+)(@(?P<alias>[^/@]+)|/(?P<version>\d+))")
FORMS = "a run id, models:/<name>@<alias> or models:/<name>/<version>"


@dataclass(frozen=True)
class Recorded:
    """What a finished run recorded that decides its result."""

    run_id: str
    name: str
    experiment: str
    commit: str
    diff: str  # the uncommitted source changes it ran with; empty when clean
    weights_digest: str
    fingerprint: str
    config: dict
    environment: dict[str, str]

    def history(self, metrics: list[str]) -> dict[str, dict[int, float]]:
        """Each of `metrics` per epoch (MLflow's step), as the run logged it."""
        client = connect()
        return {
            key: {point.step: point.value for point in client.get_metric_history(self.run_id, key)}
            for key in metrics
        }

    def note(self, verdict: str, reproduction: str) -> None:
        """Tag the original with the verdict and the run that reached it."""
        client = connect()
        client.set_tag(self.run_id, names.VERDICT, verdict)
        client.set_tag(self.run_id, names.REPRODUCED_BY, reproduction)


def find(ref: str) -> Run:
    """The run that `ref` names: a run id, or the run that logged a registered model version."""
    with lock():
        client = connect()
    model = MODEL_REF.fullmatch(ref)
    if not model and not re.fullmatch(r"[0-9a-f]{32}", ref):
        raise TrackingError(f"{ref!r} names no run: give {FORMS}")
    try:
        if model and model["alias"]:
            run_id = client.get_model_version_by_alias(model["name"], model["alias"]).run_id
        elif model:
            run_id = client.get_model_version(model["name"], model["version"]).run_id
        else:
            run_id = ref
        return client.get_run(str(run_id))
    except MlflowException as err:
        raise TrackingError(
            f"{ref} is not in the MLflow store {uri()} ({err.message}); is MLFLOW_TRACKING_URI "
            "the store it was made in? The UI (`make ui`) lists the runs and models"
        ) from None


def _artifact(run: Run, name: str) -> str | None:
    try:
        return mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{name}")
    except (MlflowException, OSError):
        return None


def _environment(tags: dict[str, str]) -> dict[str, str]:
    prefix = names.ENV_PREFIX
    return {
        key.removeprefix(prefix): value for key, value in tags.items() if key.startswith(prefix)
    }


def _diff(run: Run) -> str:
    """The uncommitted source changes the run ran with: empty when it ran clean."""
    if run.data.tags[names.DIRTY] != "True":
        return ""
    diff = _artifact(run, record.DIFF_ARTIFACT)
    if not diff:
        raise TrackingError(
            f"run {run.info.run_id} ran uncommitted source changes, but their diff "
            f"({record.DIFF_ARTIFACT}) is not in the run: it cannot be rebuilt"
        )
    return diff


def read(run: Run) -> Recorded:
    """The provenance of a FINISHED run; a TrackingError saying what is missing otherwise."""
    run_id, tags = run.info.run_id, run.data.tags
    if run.info.status != "FINISHED":
        error = f" ({tags[names.ERROR]})" if names.ERROR in tags else ""
        raise TrackingError(
            f"run {run_id} is {run.info.status}{error}: a run that did not finish has no "
            "result to compare a rebuild with; reproduce a FINISHED run"
        )
    missing = [what for tag, what in REQUIRED.items() if tag not in tags]
    environment = _environment(tags)
    if not environment:
        missing.append("environment (env.* tags)")
    config = _artifact(run, record.CONFIG_ARTIFACT)
    if config is None:
        missing.append(f"config ({record.CONFIG_ARTIFACT})")
    if missing or config is None:
        raise TrackingError(
            f"run {run_id} was made before runs recorded their provenance: it has no "
            f"{', '.join(missing)}; train it again with this code and reproduce the new run"
        )
    return Recorded(
        run_id=run_id,
        name=run.info.run_name or run_id,
        experiment=connect().get_experiment(run.info.experiment_id).name,
        commit=tags[names.COMMIT],
        diff=_diff(run),
        weights_digest=tags[names.WEIGHTS],
        fingerprint=tags[names.FINGERPRINT],
        config=yaml.safe_load(config),
        environment=environment,
    )
