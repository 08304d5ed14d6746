"""The checkpoint cache on real MNIST, as users run it: `dvc exp run` of more epochs trains
only the new ones, a train stage killed mid-epoch resumes on the next `dvc repro`, and a
sweep's jobs share their epochs; each result the same to the bit as trained from scratch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from .helpers.processes import wait_for
from .helpers.project import Project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Project:
    """A copy of the project with its data prepared, whichever of its tests runs first."""
    lab = Project.copy(tmp_path_factory.mktemp("checkpoints") / "project")
    lab.sh("dvc", "repro", "preprocess")
    return lab


def _rebuilt(lab: Project) -> dict:
    """Trained from scratch, without the cache (`pipeline.rebuild`), on params.yaml."""
    lab.sh(sys.executable, "-m", "pipeline.rebuild", "params.yaml", "data/raw/mnist.npz", "out")
    return json.loads((lab.path / "out").read_text())


def _last_run(lab: Project):
    client, runs = lab.runs()
    run = runs[-1]
    steps = client.get_metric_history(run.info.run_id, "val_accuracy")
    return run.data.tags, [point.value for point in sorted(steps, key=lambda p: p.step)]


def test_dvc_exp_run_of_more_epochs_trains_only_the_new_ones(lab):
    lab.sh("dvc", "exp", "run", "-S", "train.epochs=2")
    output = lab.sh("dvc", "exp", "run", "-S", "train.epochs=4")
    assert "going on from the checkpoint of epoch 2" in output
    tags, val_accuracy = _last_run(lab)
    assert tags["checkpoint_from_epoch"] == "2" and len(val_accuracy) == 4

    scratch = _rebuilt(lab)
    assert tags["weights_digest"] == scratch["weights_digest"]
    assert val_accuracy == [row["val_accuracy"] for row in scratch["history"]]


def test_a_training_killed_in_epoch_3_resumes_on_the_next_dvc_repro(lab, tmp_path):
    lab.sh(sys.executable, "-m", "pipeline.config", "train.epochs=4", "train.seed=7")
    known = set((lab.path / ".checkpoints").glob("*"))
    log = tmp_path / "train.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.train"],
            cwd=lab.path,
            env=lab.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        kept = lambda: [  # noqa: E731
            p for p in (lab.path / ".checkpoints").glob("*/00002.json") if p.parent not in known
        ]
        wait_for(lambda: kept() or process.poll() is not None, "epoch 2's checkpoint", 300)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert kept(), log.read_text()[-3000:]
    assert not list(kept()[0].parent.glob("00004.json")), "it finished before it was killed"

    output = lab.sh("dvc", "repro", "train")
    assert "going on from the checkpoint of epoch" in output
    tags, val_accuracy = _last_run(lab)
    assert int(tags["checkpoint_from_epoch"]) in (2, 3) and len(val_accuracy) == 4
    scratch = _rebuilt(lab)
    assert tags["weights_digest"] == scratch["weights_digest"]
    assert val_accuracy == [row["val_accuracy"] for row in scratch["history"]]


def test_a_sweep_shares_its_epochs_and_each_job_is_as_if_trained_alone(lab):
    def sweep(folder: str, *overrides: str) -> dict:
        lab.sh(
            sys.executable,
            "-m",
            "pipeline.sweep",
            "-m",
            "train.epochs=1,2",
            "train.batch_size=128,256",
            "train.seed=11",
            f"hydra.sweep.dir={folder}",
            *overrides,
        )
        client, runs = lab.runs()
        jobs = {}
        for record in (lab.path / folder).glob("*/run.json"):
            run = client.get_run(json.loads(record.read_text())["run_id"])
            name = (run.data.params["train.epochs"], run.data.params["train.batch_size"])
            model = (record.parent / "model.keras").read_bytes()
            jobs[name] = (run.data.tags["weights_digest"], model, run.data.tags)
        return jobs

    shared = sweep("multirun/shared")
    alone = sweep("multirun/alone", "checkpoints.enabled=false", "reuse=false")
    assert sorted(shared) == [("1", "128"), ("1", "256"), ("2", "128"), ("2", "256")]
    for job, made in shared.items():
        assert made[:2] == alone[job][:2], f"job {job} differs from its own training alone"
        assert alone[job][2]["checkpoint_from_epoch"] == "off"
    # Hydra's basic launcher runs the 1-epoch jobs first: the 2-epoch ones go on from them.
    assert [shared[(e, "128")][2]["checkpoint_from_epoch"] for e in "12"] == ["0", "1"]
