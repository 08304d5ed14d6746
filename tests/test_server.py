"""The team's tracking server for real: `python -m pipeline.server` starts a private PostgreSQL
cluster and `mlflow server` on loopback; `dvc repro` on real MNIST and parallel sweep jobs
log there through HTTP, and it stops what it started. Its /health fails while the database is
down, and it starts a database that died again; tests/test_server_auth.py follows the admin
password."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.server import get_app_client

from pipeline.server import __main__ as team_server

from .helpers.data import write_prepared
from .helpers.processes import wait_for
from .helpers.project import copy_project, sh
from .helpers.servers import Server, paused, reachable_folder, require_postgres
from .helpers.sweep import Sweep

pytestmark = pytest.mark.server
require_postgres()


@pytest.fixture
def data_dir():
    folder = reachable_folder("mlflow-server-")
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def shared():
    folder = reachable_folder("mlflow-server-")
    server = Server(folder / "data").wait_up()
    yield server
    try:
        assert server.stop() == 0, server.output()[-3000:]
        assert not server.database_up()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.e2e
def test_dvc_repro_logs_params_epochs_and_the_model_to_the_server(shared, tmp_path):
    env = copy_project(tmp_path / "project") | {"MLFLOW_TRACKING_URI": shared.uri}
    project = tmp_path / "project"
    sh(
        project,
        env,
        sys.executable,
        "-m",
        "pipeline.config",
        "train.epochs=2",
        "tracking.experiment=team",
    )
    sh(project, env, "dvc", "repro")
    assert not (project / "mlflow.db").exists()  # nothing went to a local store

    client = MlflowClient(shared.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["train.batch_size"] == "128"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert len(history) == 2 and all(0.9 < m.value < 1 for m in history)
    assert 0.95 < run.data.metrics["test_accuracy"] < 1
    assert "overfitting_gap" in run.data.metrics
    assert shared.sql("SELECT status FROM runs WHERE run_uuid = %s", run.info.run_id) == [
        ("FINISHED",)
    ]  # PostgreSQL holds it

    # The model went through the server to its artifact folder, and comes back the same way.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list((shared.data / "artifacts").rglob("*.keras"))
    mlflow.set_tracking_uri(shared.uri)
    (model,) = client.search_logged_models([run.info.experiment_id])
    net = mlflow.keras.load_model(f"models:/{model.model_id}")
    x_test = np.load(project / "data/prepared/x_test.npy", mmap_mode="r")
    assert net.predict(np.asarray(x_test[:1]), verbose=0)[0].argmax() == 7

    # Rebuilt from what the server recorded, bit for bit; the verdict goes back there.
    rebuilt = sh(project, env, sys.executable, "-m", "pipeline.reproduce", run.info.run_id)
    assert f"identical: run {run.info.run_id} rebuilt from commit" in rebuilt
    assert client.get_run(run.info.run_id).data.tags["reproduced"] == "identical"


def test_four_parallel_sweep_jobs_lose_nothing(shared, tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="make test-all installs it")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared.uri)
    done = Sweep(
        tmp_path,
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "train.epochs=2",
        "train.batch_size=16,32",
        "train.seed=1,2",
    )
    assert done.returncode == 0, done.output[-3000:]
    assert not done.store_made
    children = done.children()
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    assert len({r.data.tags["pipeline.pid"] for r in children}) == 4  # all at once
    for run in children:
        assert [m.step for m in done.client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
        assert "test_accuracy" in run.data.metrics
    assert done.parent.data.metrics["jobs"] == 4


def test_a_second_server_on_the_same_data_is_refused(shared):
    second = Server(shared.data)
    assert second.proc.wait(60) == 1
    assert "is already running" in second.output() and "Traceback" not in second.output()
    assert shared.database_up()


def test_a_database_that_dies_is_started_again_and_one_that_cannot_be_stops_it(data_dir):
    server, cluster = Server(data_dir).wait_up(), data_dir / "postgres"
    try:
        assert server.health() == 200
        killed = server.postmaster()
        with paused([server.proc.pid]):  # its watchdog waits until /health has said so
            os.kill(killed, signal.SIGKILL)  # PostgreSQL dies: a crash, the OOM killer
            wait_for(lambda: server.health() == 503, "/health to fail", timeout=15)
        noticed = f"the database in {cluster} stopped (its postmaster, pid {killed}, has exited)"
        wait_for(lambda: f"{noticed}: restarting it" in server.output(), "the notice", timeout=15)
        wait_for(lambda: server.health() == 200, "/health to pass again", timeout=120, every=0.5)
        again = f"the database in {cluster} runs again (restarted in"  # once pg_ctl has seen it
        wait_for(lambda: again in server.output(), "the server to say so", timeout=15)
        client = MlflowClient(server.uri)
        run = client.create_run(client.create_experiment("after a restart"))
        client.log_metric(run.info.run_id, "accuracy", 0.97)
        assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.97}

        with open(cluster / "postgresql.conf", "a") as conf:
            conf.write("shared_buffers = 'plenty'\n")  # the next start refuses it
        os.kill(server.postmaster(), signal.SIGKILL)
        assert server.proc.wait(120) == 1
    finally:
        server.stop()
        print(server.output()[-5000:])  # pytest shows it if the test fails
    assert (
        f"error: the database in {cluster} stopped and did not start again in 3 tries (FATAL: "
        f'configuration file "{cluster}/postgresql.conf" contains errors): see {cluster}/'
        "server.log; stopped the MLflow server too: fix what that log says, then start it again\n"
    ) in server.output()
    assert "Traceback" not in server.output()
    assert not server.answers() and not server.database_up()


def test_runs_and_artifacts_outlive_a_restart(data_dir):
    first = Server(data_dir).wait_up()
    try:
        client = MlflowClient(first.uri)
        run = client.create_run(client.create_experiment("kept"))
        client.log_metric(run.info.run_id, "accuracy", 0.97, step=1)
        client.log_text(run.info.run_id, "the notes", "notes.txt")
        client.set_terminated(run.info.run_id)
    finally:
        assert first.stop() == 0
    assert "stopped the database" in first.output()
    assert not first.database_up()

    again = Server(data_dir).wait_up()
    try:
        client = MlflowClient(again.uri)
        kept = client.get_run(run.info.run_id)
        assert kept.data.metrics == {"accuracy": 0.97} and kept.info.status == "FINISHED"
        mlflow.set_tracking_uri(again.uri)
        assert mlflow.artifacts.load_text(f"{kept.info.artifact_uri}/notes.txt") == "the notes"
    finally:
        assert again.stop() == 0


def test_basic_auth_needs_the_admin_password_set_then_asks_every_client(data_dir, monkeypatch):
    refused = Server(data_dir, "--auth", env={team_server.PASSWORD_VARIABLE: ""})
    assert refused.proc.wait(60) == 1
    assert (
        f"--auth needs an admin password of 12 or more characters in "
        f"{team_server.PASSWORD_VARIABLE}" in refused.output()
    )
    assert not refused.database_up()

    password = "a long test password"
    guarded = Server(data_dir, "--auth", env={team_server.PASSWORD_VARIABLE: password})
    try:
        guarded.wait_up()
        assert guarded.search() == 401
        assert guarded.search("admin", "password1234") == 401
        assert guarded.search("admin", password) == 200

        # The admin adds a team member, who logs into the experiment the admin made.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        experiment = MlflowClient(guarded.uri).create_experiment("mnist")
        get_app_client("basic-auth", tracking_uri=guarded.uri).create_user(
            "bob", "bob's own password"
        )
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bob's own password")
        client = MlflowClient(guarded.uri)
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", 0.97)
        assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.97}
        assert guarded.search("bob", "a guess") == 401
    finally:
        assert guarded.stop() == 0
    assert oct((data_dir / "auth.ini").stat().st_mode & 0o777) == "0o600"


def test_another_address_without_auth_is_refused(data_dir):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.server",
            "--data",
            str(data_dir),
            "--host",
            "10.11.12.13",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        "--host 10.11.12.13 would let anyone who reaches it read and change every run: "
        "add --auth" in done.stderr
    )
    assert not (data_dir / "postgres").exists()  # refused before anything was made


def test_a_data_folder_that_is_not_a_cluster_is_left_alone(data_dir):
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres/notes.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.server", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"{data_dir / 'postgres'} is not a PostgreSQL cluster, and not empty" in done.stderr
    assert [p.name for p in (data_dir / "postgres").iterdir()] == ["notes.txt"]


def _log_the_training_set(uri: str, prepared: str, barrier) -> str:
    """One job's first steps: open a run, then log the training set as its input."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from pipeline import preprocess
    from pipeline.tracking import record, runs

    x, y = preprocess.load_split(Path(prepared), "train")
    meta = json.loads((Path(prepared) / preprocess.META).read_text())
    with runs.start("datasets") as run_id:
        barrier.wait(60)
        record.data(x, y, meta, source=prepared, context="training")
    return run_id


def test_jobs_logging_the_same_new_dataset_at_once_all_keep_it(shared, tmp_path):
    """MLflow's SQL store looks a dataset up, then inserts it: jobs that start together can
    all miss it, and on PostgreSQL all inserts but one fail on its unique key."""
    prepared = str(write_prepared(tmp_path / "prepared"))
    jobs = 6
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(
                pool.map(
                    _log_the_training_set,
                    [shared.uri] * jobs,
                    [prepared] * jobs,
                    [barrier] * jobs,
                    timeout=300,
                )
            )
    client = MlflowClient(shared.uri)
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["mnist-training"]
