"""Sweeps on the team's server (`python -m pipeline.server`) through outages, for real on
loopback:

- the server (with --auth) is stopped while a job trains, and started again once that job has
  failed; the client's MLFLOW_TRACKING_URI holds the admin's password, as MLflow allows.
  Afterwards every run is in a true state, the later jobs succeeded, the report exists, and
  the password is nowhere the sweep wrote.
- its PostgreSQL is stopped while a job trains; the server starts it again, and the job rides
  it out: nothing is lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.server import postgres
from pipeline.tracking import ends, names

from .helpers.data import write_prepared
from .helpers.processes import wait_for
from .helpers.servers import Server, reachable_folder

pytestmark = pytest.mark.server
pytest.importorskip("psycopg", reason="pip install -e '.[server]' (make test-all does)")
try:
    postgres.pg_program("initdb")
except Exception as err:  # noqa: BLE001 - the reason is printed in the skip
    pytest.skip(f"{err} (make test-all installs it)", allow_module_level=True)

PASSWORD = "not-in-any-file-7f3a9c"
LONG = 100000  # the epochs of the job the outage hits: it trains until the server goes


def _team_server(data: Path, port: int | None = None) -> Server:
    """The team server with --auth, its admin made with PASSWORD (on `port`: a restart)."""
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}
    return Server(data, "--auth", env=env, port=port).wait_up()


def _training(client: MlflowClient, epochs: int = LONG) -> bool:
    experiment = client.get_experiment_by_name("mnist")
    return bool(
        experiment
        and client.search_runs(
            [experiment.experiment_id], f"params.`train.epochs` = '{epochs}' and metrics.loss > 0"
        )
    )


def _sweep(project: Path, epochs: str) -> list[str]:
    """The command of a sweep over `epochs`, on tiny synthetic digits, in `project`."""
    command = [sys.executable, "-m", "pipeline.sweep", "-m", f"train.epochs={epochs}"]
    command += ["model.hidden_units=16", "checkpoints.enabled=false"]
    command += [f"paths.prepared={write_prepared(project / 'prepared')}"]
    return command + [
        f"hydra.sweep.dir={project / 'multirun'}",
        f"hydra.run.dir={project / 'run'}",
    ]


@pytest.fixture(scope="module")
def outage():
    """The sweep, its output, and what the server holds afterwards."""
    folder = reachable_folder("mlflow-outage-")
    project = folder / "project"
    project.mkdir()
    command = _sweep(project, f"2,{LONG},3")
    env = os.environ | {"DVC_ROOT": str(project)}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    server = _team_server(folder / "data")
    sweep = None
    try:
        url = server.uri
        secret_url = url.replace("http://", f"http://admin:{PASSWORD}@")
        env["MLFLOW_TRACKING_URI"] = secret_url
        client = MlflowClient(secret_url)
        with (project / "sweep.log").open("w") as out:
            sweep = subprocess.Popen(command, cwd=project, stdout=out, stderr=out, env=env)
        wait_for(lambda: _training(client), "the long job's first epoch", timeout=300)
        server.stop()
        failed = f"error: the MLflow store {url} failed during run"
        wait_for(lambda: failed in (project / "sweep.log").read_text(), "the job to fail", 180)
        server = _team_server(folder / "data", server.port)
        assert sweep.wait(timeout=600) == 1
        experiment = client.get_experiment_by_name("mnist").experiment_id
        yield project, (project / "sweep.log").read_text(), client.search_runs([experiment])
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _by_epochs(found: list) -> dict[str, object]:
    return {r.data.params["train.epochs"]: r for r in found if names.SWEEP not in r.data.tags}


def test_the_job_an_outage_kills_is_failed_and_every_run_is_in_a_true_state(outage):
    project, output, found = outage
    jobs = _by_epochs(found)
    statuses = {epochs: run.info.status for epochs, run in jobs.items()}
    assert statuses == {"2": "FINISHED", str(LONG): "FAILED", "3": "FINISHED"}
    error = jobs[str(LONG)].data.tags["error"]
    assert error.startswith("MlflowException: ") and "127.0.0.1" in error
    (parent,) = [r for r in found if r.data.tags.get(names.SWEEP) == "parent"]
    assert parent.info.status == "FAILED"
    assert "1 of 3 jobs failed" in output
    assert f"could not mark the run {jobs[str(LONG)].info.run_id} FAILED" in output
    assert "marked 1 run(s) as they ended while the store was away" in output
    assert not list((project / ends.PENDING).glob("*.json"))  # all delivered
    assert "is already active" not in output and "Traceback" not in output


def test_the_jobs_after_an_outage_succeed_and_the_report_is_written(outage):
    project, _, found = outage
    after = _by_epochs(found)["3"]
    assert "test_accuracy" in after.data.metrics
    assert (project / "multirun" / "sweep_report.md").is_file()
    (parent,) = [r for r in found if r.data.tags.get(names.SWEEP) == "parent"]
    assert parent.data.metrics["jobs"] == 3


def test_the_password_in_the_tracking_uri_is_nowhere_the_sweep_wrote(outage):
    project, output, found = outage
    assert "View run" in output  # MLflow's own lines, printed without it
    assert PASSWORD not in output
    for path in project.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    for run in found:
        assert PASSWORD not in repr(run.data.tags) + repr(run.data.params), run.info.run_id
    for record in (project / "multirun").rglob("run.json"):
        assert record.stat().st_mode & 0o777 == 0o600


RIDES = 1500  # the epochs of the job that rides out the database's restart (about 30 s)


@pytest.fixture(scope="module")
def database_outage():
    """A sweep whose second job's database is stopped (a fast shutdown, as `pg_ctl stop` makes)
    while it trains: the sweep's result, its output, the runs, and the server's output."""
    folder = reachable_folder("mlflow-db-outage-")
    project = folder / "project"
    project.mkdir()
    server = Server(folder / "data").wait_up()
    sweep = None
    try:
        client = MlflowClient(server.uri)
        env = os.environ | {"DVC_ROOT": str(project), "MLFLOW_TRACKING_URI": server.uri}
        with (project / "sweep.log").open("w") as out:
            command = _sweep(project, f"2,{RIDES},3")
            sweep = subprocess.Popen(command, cwd=project, stdout=out, stderr=out, env=env)
        wait_for(lambda: _training(client, RIDES), "the long job's first epoch", timeout=300)
        os.kill(server.postmaster(), signal.SIGINT)  # PostgreSQL's fast shutdown
        code = sweep.wait(timeout=600)
        experiment = client.get_experiment_by_name("mnist").experiment_id
        found = client.search_runs([experiment])
        yield code, (project / "sweep.log").read_text(), server.output(), client, found
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_rides_out_its_database_restarting_and_loses_nothing(database_outage):
    code, output, served, client, found = database_outage
    assert "Error in _log_batch" in served  # the job's epochs met the database down
    assert "/postgres stopped (its postmaster has exited" in served
    assert "/postgres runs again (restarted in" in served
    assert code == 0, output[-3000:]
    assert {run.info.status for run in found} == {"FINISHED"}
    long = _by_epochs(found)[str(RIDES)]
    steps = [m.step for m in client.get_metric_history(long.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, RIDES + 1))  # every epoch, once
    assert "Traceback" not in output
