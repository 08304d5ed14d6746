"""The tracking store when things go wrong: a run left RUNNING by a process that died, a
tracking server that is down when a stage starts, stops or hangs in the middle of its run.

The stages run as DVC runs them, in a project folder of their own (tests/helpers/stage.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.tracking import ends, runs, store

from .helpers.processes import answers, dead_pid, free_port, wait_for
from .helpers.proxy import Proxy
from .helpers.stage import Stage


def test_a_run_left_running_by_a_dead_process_is_marked_killed_at_the_next_start():
    client = MlflowClient(store.uri())
    with runs.start("mnist"):
        pass  # creates the store and the experiment
    experiment = client.get_experiment_by_name("mnist").experiment_id
    host = socket.gethostname()
    owners = {
        "dead": (host, dead_pid()),
        "alive": (host, os.getpid()),
        "elsewhere": ("another-machine", dead_pid()),
    }
    opened = {
        name: client.create_run(
            experiment, run_name=name, tags={"pipeline.host": owner, "pipeline.pid": str(pid)}
        ).info.run_id
        for name, (owner, pid) in owners.items()
    }

    with runs.start("mnist"):
        pass

    status = {name: client.get_run(run_id).info.status for name, run_id in opened.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    error = client.get_run(opened["dead"]).data.tags["error"]
    assert f"its process ({owners['dead'][1]} on {host}) died" in error


def test_a_tracking_server_that_is_down_fails_the_stage_quickly_naming_it(tmp_path):
    stage = Stage(tmp_path, "train.epochs=1")
    server = f"http://127.0.0.1:{free_port()}"

    started = time.monotonic()
    done = stage.run("train", env={"MLFLOW_TRACKING_URI": server})
    took = time.monotonic() - started

    assert done.returncode == 1
    assert f"cannot open a run in experiment 'mnist' in the MLflow store {server}" in done.stderr
    assert "is the server up, and MLFLOW_TRACKING_URI right?" in done.stderr
    assert took < 60, f"took {took:.0f} s"  # bounded: 3 quick retries, not minutes
    assert not (tmp_path / "models").exists()


def _start_tracking_server(home, url: str, log) -> subprocess.Popen:
    """`make ui`, on a store of its own in `home`, in a session of its own."""
    home.mkdir()
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.ui", "--port", url.rpartition(":")[2]],
            cwd=home,
            env=os.environ | {"DVC_ROOT": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _first_epoch_on(url: str) -> list:
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("mnist")
    return experiment and client.search_runs([experiment.experiment_id], "metrics.loss > 0")


@pytest.mark.server
def test_a_tracking_server_that_stops_mid_run_fails_the_stage_naming_it(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    server = _start_tracking_server(tmp_path / "server", url, tmp_path / "server.log")
    project = tmp_path / "project"
    project.mkdir()
    stage = Stage(project, "train.epochs=100000")
    log = tmp_path / "train.log"
    process = None
    try:
        wait_for(lambda: answers(f"{url}/health"), "the tracking server", timeout=90)
        process = stage.start("train", log, env={"MLFLOW_TRACKING_URI": url})
        wait_for(lambda: _first_epoch_on(url), "a first epoch on the server")
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        stopped = time.monotonic()
        assert process.wait(timeout=180) == 1
        took = time.monotonic() - stopped
    finally:
        for child in (process, server):
            if child is not None and child.poll() is None:
                child.kill()
    output = log.read_text()
    assert f"error: the MLflow store {url} failed during run " in output
    assert "Traceback" not in output
    assert took < 90, f"took {took:.0f} s"
    assert not (project / "models").exists()


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`make ui` on a store of its own, for the tests below to put a proxy in front of."""
    home = tmp_path_factory.mktemp("tracking")
    url = f"http://127.0.0.1:{free_port()}"
    server = _start_tracking_server(home / "server", url, home / "server.log")
    try:
        wait_for(lambda: answers(f"{url}/health"), "the tracking server", timeout=90)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture
def proxy(tracking_server, monkeypatch):
    """The tracking server behind a proxy the test can cut or make hang; MLflow tries each
    call twice, 2 s at most each."""
    proxy = Proxy(("127.0.0.1", int(tracking_server.rpartition(":")[2])))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    yield proxy
    proxy.stop()


@pytest.mark.server
@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("cut", "(connection refused|the connection was cut)"),
        ("hang", "no answer in 2 s; is the server stuck, or the"),
    ],
)
def test_a_run_whose_store_fails_is_marked_failed_when_it_is_back(proxy, tmp_path, fault, why):
    client = MlflowClient(proxy.uri)
    started = time.monotonic()
    failed = f"the MLflow store {proxy.uri} failed during run [0-9a-f]+: {why}"
    with pytest.raises(store.TrackingError, match=failed):
        with runs.start("mnist") as lost:
            getattr(proxy, fault)()
            mlflow.log_metric("loss", 0.5)
    took = time.monotonic() - started
    assert mlflow.active_run() is None  # the next run starts clean, and exit ends nothing
    kept = tmp_path / ends.PENDING / f"{lost}.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert took < 30, f"took {took:.0f} s"

    proxy.restore()
    assert client.get_run(lost).info.status == "RUNNING"  # never told, never FINISHED
    with runs.start("mnist") as after:
        pass
    lost_run = client.get_run(lost)
    assert lost_run.info.status == "FAILED"
    assert lost_run.data.tags["error"].startswith("MlflowException: ")
    assert lost_run.info.end_time < client.get_run(after).info.start_time  # when it failed
    assert client.get_run(after).info.status == "FINISHED"
    assert not kept.exists()
