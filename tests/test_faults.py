"""DVC itself when a stage is killed or a second `dvc repro` starts at once, on real MNIST in
a throwaway copy of this project: what the user sees, and that nothing was lost or left
half-written.

The faults of one module sit beside its tests: the train stage diverging or stopped
(test_train.py), a sweep stopped (test_sweep.py), failing writes (test_files.py), damaged
models (test_model.py), the tracking store failing (test_tracking_faults.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline import config

from .helpers.processes import wait_for
from .helpers.project import copy_project, sh
from .helpers.stage import temporaries

pytestmark = pytest.mark.e2e


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
    running = [
        run
        for run in _runs(path).values()
        if run.info.status == "RUNNING" and "loss" in run.data.metrics
    ]
    return {"run_id": running[0].info.run_id, **running[0].data.tags} if running else {}


@pytest.mark.parametrize(("sig", "redo"), [(signal.SIGTERM, 2), (signal.SIGKILL, 3)])
def test_a_train_stage_killed_mid_epoch_leaves_the_last_good_state(dvc_project, sig, redo):
    path, env = dvc_project
    lock, model = _trained(path), (path / "models/model.keras").read_bytes()
    _set_epochs(path, 30)
    log = path.parent / f"repro-{sig.name}.log"
    with log.open("w") as out:
        repro = subprocess.Popen(
            ["dvc", "repro"], cwd=path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
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


def test_a_second_dvc_repro_at_once_is_refused_by_dvcs_lock(dvc_project):
    path, env = dvc_project
    _set_epochs(path, 4)
    log = path.parent / "repro-first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            ["dvc", "repro"], cwd=path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "Running stage 'train'" in log.read_text(), "the first repro")
        second = subprocess.run(
            ["dvc", "repro"], cwd=path, env=env, capture_output=True, text=True, timeout=120
        )
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        first.kill()

    assert second.returncode != 0
    assert "is busy, it is being blocked by" in second.stderr  # DVC's rwlock
    assert "dvc repro" in second.stderr  # the command holding it
    assert "up to date" in sh(path, env, "dvc", "status")
