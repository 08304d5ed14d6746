"""Faults provoked for real: a diverging loss, killed stages, a tracking server that is down,
a full disk, damaged models. Each test checks what the user sees and that nothing was lost or
left half-written.

The stages run as DVC runs them, as `python -m pipeline.<stage>` in a project folder of
their own (tiny synthetic digits, the test's own store), unless the case is about DVC itself:
those run `dvc repro` on real MNIST (`dvc_project`).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from bench.sandbox import copy_project
from pipeline import config, files, tracking

from .conftest import answers, free_port, make_arrays, sh, write_prepared

STAGE_TIMEOUT_S = 300


class Stage:
    """A project folder with params.yaml (the real config, shrunk) and prepared synthetic
    digits, where stages run as subprocesses."""

    def __init__(self, folder: Path, *overrides: str) -> None:
        self.path = folder
        plain = config.compose(["model.hidden_units=16", "train.batch_size=32", *overrides])
        (folder / "params.yaml").write_text(config.dump(plain))
        write_prepared(folder / "data" / "prepared")

    def command(self, stage: str, *args: str) -> list[str]:
        return [sys.executable, "-m", f"pipeline.{stage}", *args]

    def run(self, stage: str, *args: str, env: dict | None = None,
            **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(stage, *args), cwd=self.path, capture_output=True,
                              text=True, timeout=STAGE_TIMEOUT_S,
                              env=os.environ | (env or {}), **kwargs)

    def start(self, stage: str, log: Path, env: dict | None = None) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(self.command(stage), cwd=self.path, stdout=out,
                                    stderr=subprocess.STDOUT, env=os.environ | (env or {}))

    def runs(self) -> list:
        client = MlflowClient(tracking.uri())
        experiment = client.get_experiment_by_name("mnist")
        return client.search_runs([experiment.experiment_id]) if experiment else []

    def leftovers(self) -> list[str]:
        return temporaries(self.path)


TEMPORARY = re.compile(r"\..+\.\d+\..+")  # files.replacing's: .<name>.<pid>.<random><suffix>


def temporaries(folder: Path) -> list[str]:
    """Temporary files of interrupted writes, anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.is_file() and TEMPORARY.fullmatch(p.name))


def wait_for(predicate, what: str, timeout: float = 120.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------- training that diverges


def test_a_loss_that_becomes_nan_fails_the_run_and_publishes_nothing(tmp_path):
    stage = Stage(tmp_path, "train.learning_rate=1e20", "train.epochs=3")

    done = stage.run("train")

    assert done.returncode == 1
    assert "training diverged, and no model was saved or registered" in done.stderr
    assert "lower train.learning_rate (now 1e+20)" in done.stderr
    assert "Traceback" not in done.stderr
    (run,) = stage.runs()
    assert run.info.status == "FAILED"
    assert "the training loss became nan" in run.data.tags["error"]
    assert not (tmp_path / "models").exists() and stage.leftovers() == []
    assert MlflowClient(tracking.uri()).search_registered_models() == []


# ---------------------------------------------------------------- stopped and killed


def test_sigterm_mid_training_marks_the_run_killed_and_leaves_no_model(tmp_path):
    stage = Stage(tmp_path, "train.epochs=100000")
    log = tmp_path / "train.log"
    process = stage.start("train", log)
    try:
        wait_for(lambda: "training 100000 epochs" in log.read_text(), "training to start")
        wait_for(lambda: [r for r in stage.runs() if r.data.metrics.get("loss")],
                 "a first epoch in MLflow")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        process.kill()
    output = log.read_text()
    assert ("stopped by SIGTERM: nothing half-written was kept, and an MLflow run it had open "
            "is KILLED; rerun it (a stage: `dvc repro`)") in output
    assert "Traceback" not in output
    (run,) = stage.runs()
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("Stopped: signal SIGTERM")
    assert not (tmp_path / "models" / "model.keras").exists() and stage.leftovers() == []


@pytest.mark.parametrize(("sig", "by", "code"), [(signal.SIGINT, "Ctrl-C", 130),
                                                  (signal.SIGTERM, "SIGTERM", 143)])
def test_a_sweep_stopped_midway_ends_its_parent_and_running_job_killed(tmp_path, sig, by,
                                                                       code):
    stage = Stage(tmp_path)
    log = tmp_path / "sweep.log"
    command = stage.command("sweep", "-m", "train.epochs=100000", "train.seed=1,2",
                            f"paths.prepared={tmp_path / 'data' / 'prepared'}",
                            f"hydra.sweep.dir={tmp_path / 'multirun'}")
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: [r for r in stage.runs() if r.data.metrics.get("loss")],
                 "the first job's first epoch")
        process.send_signal(sig)
        assert process.wait(timeout=60) == code
    finally:
        process.kill()
    assert (f"sweep stopped by {by}: its parent run and the job running are KILLED"
            in log.read_text())
    runs = stage.runs()
    assert len(runs) == 2  # the parent and the first job; the second never started
    assert {r.info.status for r in runs} == {"KILLED"}


def test_a_run_left_running_by_a_dead_process_is_marked_killed_at_the_next_start():
    client = MlflowClient(tracking.uri())
    with tracking.start("mnist"):
        pass  # creates the store and the experiment
    experiment = client.get_experiment_by_name("mnist").experiment_id
    host = socket.gethostname()
    owners = {"dead": (host, dead_pid()), "alive": (host, os.getpid()),
              "elsewhere": ("another-machine", dead_pid())}
    runs = {name: client.create_run(experiment, run_name=name, tags={
        "pipeline.host": owner, "pipeline.pid": str(pid)}).info.run_id
        for name, (owner, pid) in owners.items()}

    with tracking.start("mnist"):
        pass

    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    error = client.get_run(runs["dead"]).data.tags["error"]
    assert f"its process ({owners['dead'][1]} on {host}) died" in error


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.keras"
    orphan = tmp_path / f".model.keras.{dead_pid()}.abc123.keras"
    ours = tmp_path / f".model.keras.{os.getpid()}.def456.keras"  # a write in progress
    other = tmp_path / f".metrics.json.{dead_pid()}.abc123.tmp"  # another file's
    for path in (orphan, ours, other):
        path.write_text("half")

    files.write_text(target, "whole")

    assert target.read_text() == "whole"
    assert not orphan.exists() and ours.exists() and other.exists()


# ---------------------------------------------------------------- a tracking server down


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


def test_a_tracking_server_that_stops_mid_run_fails_the_stage_naming_it(tmp_path):
    home = tmp_path / "server"
    home.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "server.log").open("w") as out:  # `make ui`, on a store of its own
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.ui", "--port", url.rpartition(":")[2]], cwd=home,
            env=os.environ | {"DVC_ROOT": str(home)}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    project = tmp_path / "project"
    project.mkdir()
    stage = Stage(project, "train.epochs=100000")
    log = tmp_path / "train.log"
    process = None
    try:
        wait_for(lambda: answers(f"{url}/health"), "the tracking server", timeout=90)
        process = stage.start("train", log, env={"MLFLOW_TRACKING_URI": url})
        client = MlflowClient(url)
        wait_for(lambda: client.get_experiment_by_name("mnist") and client.search_runs(
            [client.get_experiment_by_name("mnist").experiment_id], "metrics.loss > 0"),
            "a first epoch on the server")
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


# ---------------------------------------------------------------- full disk, damaged files


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ
    return apply


def test_a_write_that_fails_keeps_the_previous_outputs_and_says_why(tmp_path):
    stage = Stage(tmp_path)
    raw = tmp_path / "data" / "raw" / "mnist.npz"
    raw.parent.mkdir(parents=True)
    np.savez(raw, **make_arrays(seed=0))
    assert stage.run("preprocess").returncode == 0
    prepared = tmp_path / "data" / "prepared"
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    np.savez(raw, **make_arrays(seed=1))  # new data that will not fit

    done = stage.run("preprocess", preexec_fn=_file_size_limit(4096))

    assert done.returncode == 1
    assert "error: cannot write data/prepared/x_train.npy (" in done.stderr
    assert ("the previous one is kept. Free some disk space or make data/prepared writable, "
            "then rerun") in done.stderr
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    assert stage.leftovers() == []


def test_a_damaged_model_given_to_evaluate_or_predict_is_named_as_damaged(tmp_path):
    stage = Stage(tmp_path, "train.epochs=1")
    assert stage.run("train").returncode == 0
    model = tmp_path / "models" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), dtype=np.float32))

    evaluated = stage.run("evaluate")
    predicted = stage.run("predict", str(digit), "--model", str(model))

    for done in (evaluated, predicted):
        assert done.returncode == 1
        assert "models/model.keras is not a loadable Keras model" in done.stderr
        assert "No such file" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "reports" / "metrics.json").exists()


# ---------------------------------------------------------------- DVC itself, on real MNIST


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    """This project in a fresh git repo, reproduced once with 1 epoch on real MNIST."""
    path = tmp_path_factory.mktemp("faults") / "project"
    env = copy_project(path)
    sh(path, env, "dvc", "exp", "run", "-S", "train.epochs=1")
    return path, env


def _set_epochs(path: Path, epochs: int) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    (path / "params.yaml").write_text(config.dump(params))


def _trained(path: Path) -> dict:
    """What dvc.lock records of train and evaluate."""
    stages = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    return {name: stages[name] for name in ("train", "evaluate")}


def _runs(path: Path) -> dict:
    client = MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist").experiment_id
    return {run.info.run_id: run for run in client.search_runs([experiment])}


def _running_train(path: Path) -> dict:
    """The run id and tags (pipeline.pid) of the RUNNING train run, once it has logged its
    first epoch."""
    running = [run for run in _runs(path).values()
               if run.info.status == "RUNNING" and "loss" in run.data.metrics]
    return {"run_id": running[0].info.run_id, **running[0].data.tags} if running else {}


@pytest.mark.e2e
@pytest.mark.parametrize(("sig", "redo"), [(signal.SIGTERM, 2), (signal.SIGKILL, 3)])
def test_a_train_stage_killed_mid_epoch_leaves_the_last_good_state(dvc_project, sig, redo):
    path, env = dvc_project
    lock, model = _trained(path), (path / "models/model.keras").read_bytes()
    _set_epochs(path, 30)
    log = path.parent / f"repro-{sig.name}.log"
    with log.open("w") as out:
        repro = subprocess.Popen(["dvc", "repro"], cwd=path, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    try:
        tags = wait_for(lambda: _running_train(path), "a training epoch", timeout=240)
        os.kill(int(tags["pipeline.pid"]), sig)
        assert repro.wait(timeout=120) != 0
    finally:
        repro.kill()

    assert "failed to reproduce 'train'" in log.read_text()
    assert _trained(path) == lock  # the last good state
    # DVC removed the stage's outputs before running it; nothing half-written took their place,
    # and `dvc checkout` brings back the last good ones from its cache.
    assert not (path / "models/model.keras").exists()
    sh(path, env, "dvc", "checkout", "train")
    assert (path / "models/model.keras").read_bytes() == model
    assert [t for t in temporaries(path) if not t.startswith((".dvc", ".git"))] == []
    (killed,) = [run for run_id, run in _runs(path).items() if run_id == tags["run_id"]]
    # SIGKILL leaves no chance to end the run: it is RUNNING until the next start.
    assert killed.info.status == ("KILLED" if sig == signal.SIGTERM else "RUNNING")

    _set_epochs(path, redo)  # epochs no other test ran: DVC's run-cache has no copy
    output = sh(path, env, "dvc", "repro")

    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output, output
    assert "up to date" in sh(path, env, "dvc", "status")
    final = _runs(path)
    assert final[killed.info.run_id].info.status == "KILLED"
    assert "RUNNING" not in {run.info.status for run in final.values()}


@pytest.mark.e2e
def test_a_second_dvc_repro_at_once_is_refused_by_dvcs_lock(dvc_project):
    path, env = dvc_project
    _set_epochs(path, 4)
    log = path.parent / "repro-first.log"
    with log.open("w") as out:
        first = subprocess.Popen(["dvc", "repro"], cwd=path, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Running stage 'train'" in log.read_text(), "the first repro")
        second = subprocess.run(["dvc", "repro"], cwd=path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        first.kill()

    assert second.returncode != 0
    assert "is busy, it is being blocked by" in second.stderr  # DVC's rwlock
    assert "dvc repro" in second.stderr  # the command holding it
    assert "up to date" in sh(path, env, "dvc", "status")


# ---------------------------------------------------------------- nothing leaves unasked


@pytest.mark.parametrize(("given", "expected"), [(None, "true"), ("false", "false")])
def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    if given is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = given
    done = subprocess.run([sys.executable, "-c", "import pipeline.tracking, os; "
                           "print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == expected


def test_dvc_analytics_are_off_in_the_projects_own_config(tmp_path):
    env = copy_project(tmp_path / "project")
    assert sh(tmp_path / "project", env, "dvc", "config", "core.analytics").strip() == "false"
