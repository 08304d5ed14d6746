"""Hydra sweeps through `python -m pipeline.sweep`, on tiny synthetic digits and a real store.

Each sweep runs as a user runs it, in a subprocess; its store is the test's own
(`DVC_ROOT` = the test's folder, see conftest).
"""

from __future__ import annotations

import json
import signal
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from pipeline import config
from pipeline.config import replicates
from pipeline.sweep import report as sweep_report
from pipeline.sweep import runner as sweep
from pipeline.tracking import names

from .helpers.processes import in_a_terminal, wait_for
from .helpers.stage import Stage
from .helpers.sweep import Sweep


def _combo(run) -> tuple[str, str]:
    return run.data.params["train.epochs"], run.data.params["train.batch_size"]


def _layer_names(model: Path) -> list[str]:
    with zipfile.ZipFile(model) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    return [layer["config"]["name"] for layer in layers]


def _assert_a_finished_job(done, child, tmp_path: Path) -> None:
    """A child run: an epoch of val_accuracy each, the metrics of evaluate, the job's folder
    with its run record, its own model and the config it ran, as the run holds it."""
    epochs = int(child.data.params["train.epochs"])
    history = done.client.get_metric_history(child.info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, epochs + 1))
    assert {"test_accuracy", "overfitting_gap", "train_accuracy"} <= set(child.data.metrics)
    assert child.data.tags["mlflow.runName"] == (
        f"train.epochs={epochs} train.batch_size={child.data.params['train.batch_size']}"
    )
    job = Path(child.data.tags["hydra_output_dir"])
    record = json.loads((job / "run.json").read_text())
    assert record["run_id"] == child.info.run_id
    assert (
        done.client.get_logged_model(record["model_uri"].removeprefix("models:/")).source_run_id
        == child.info.run_id
    )
    # Clean Keras state: no job's layers are numbered after an earlier job's.
    assert _layer_names(job / "model.keras") == ["input_layer", "dense", "dense_1"]
    # The job's folder and its run hold the same config: either reproduces it.
    kept = yaml.safe_load((job / ".hydra/config.yaml").read_text())
    logged = yaml.safe_load(done.artifact(child, "config.yaml", tmp_path).read_text())
    assert kept == logged and kept["train"]["epochs"] == epochs


def _assert_the_parent_sums_up(done, children, tmp_path: Path) -> None:
    """The parent run: the swept values, the jobs' count, the best job tagged, the report."""
    parent = done.parent
    assert parent.info.status == "FINISHED"
    assert parent.data.params["train.epochs"] == "1,2"
    assert parent.data.params["train.batch_size"] == "16,32"
    assert parent.data.metrics["jobs"] == 4 and parent.data.metrics["jobs_failed"] == 0
    best = max(children, key=lambda r: r.data.metrics["val_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert [
        r.info.run_id
        for r in children
        if done.client.get_run(r.info.run_id).data.tags.get(names.BEST_IN_SWEEP)
    ] == [best.info.run_id]
    logged = pd.read_csv(done.artifact(parent, sweep_report.CSV, tmp_path))
    assert len(logged) == 4 and set(logged["run_id"]) == {r.info.run_id for r in children}
    assert logged.equals(pd.read_csv(done.folder / sweep_report.CSV))
    assert (done.folder / sweep_report.PLOT).stat().st_size > 10_000
    assert best.info.run_id in parent.data.tags["mlflow.note.content"]


@pytest.mark.e2e  # a whole 2x2 sweep, end to end: slow (20 s)
def test_a_2x2_sweep_is_one_parent_run_with_a_finished_child_per_job(tmp_path):
    # A run id left in the environment (a shell inside `mlflow run`) must not be resumed.
    done = Sweep(
        tmp_path,
        "-m",
        "train.epochs=1,2",
        "train.batch_size=16,32",
        env={"MLFLOW_RUN_ID": "0" * 32},
    )
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert len(done.runs) == 5 and len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "32"), ("2", "16"), ("2", "32")]
    for child in children:
        _assert_a_finished_job(done, child, tmp_path)
    _assert_the_parent_sums_up(done, children, tmp_path)


@pytest.mark.e2e  # a whole 1x3 sweep, end to end: slow (15 s)
def test_sweep_ranges_in_config_with_the_command_line_winning(tmp_path):
    done = Sweep(tmp_path, "-m", "grid=overfitting", "train.epochs=1", "replicates=1")
    assert done.returncode == 0, done.output[-3000:]
    assert sorted(map(_combo, done.children()), key=lambda c: int(c[1])) == [
        ("1", "64"),
        ("1", "128"),
        ("1", "256"),
    ]


@pytest.mark.e2e  # a whole 4-job sweep, end to end: slow (20 s)
def test_a_failing_job_is_failed_the_others_still_log_and_the_sweep_exits_1(tmp_path):
    done = Sweep(tmp_path, "-m", "train.epochs=1", "train.seed=1,2,-1,3")
    assert done.returncode == 1
    children = done.children()
    finished = [r for r in children if r.info.status == "FINISHED"]
    (failed,) = [r for r in children if r.info.status == "FAILED"]
    assert sorted(r.data.params["train.seed"] for r in finished) == ["1", "2", "3"]
    assert all("test_accuracy" in r.data.metrics for r in finished)
    assert "train.seed must be >= 0, got -1" in failed.data.tags["error"]
    assert done.parent.info.status == "FAILED"
    assert done.parent.data.metrics["jobs_failed"] == 1
    assert "1 of 4 jobs failed" in done.output
    assert pd.read_csv(done.folder / sweep_report.CSV)["status"].tolist().count("FAILED") == 1


@pytest.mark.server  # an optional extra: make test-all installs it
def test_the_joblib_launcher_runs_jobs_in_other_processes_under_one_parent(tmp_path):
    pytest.importorskip(
        "hydra_plugins.hydra_joblib_launcher",
        reason="pip install -e '.[joblib]' (make test-all does)",
    )
    done = Sweep(
        tmp_path,
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "train.epochs=1",
        "train.batch_size=16,32",
        "train.seed=1,2",
    )
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "16"), ("1", "32"), ("1", "32")]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in children)
    workers = {r.data.tags[names.OWNER_PID] for r in children}
    assert len(workers) == 2 and done.parent.data.tags[names.OWNER_PID] not in workers
    assert done.parent.info.status == "FINISHED" and done.parent.data.metrics["jobs"] == 4


@pytest.mark.server  # an optional extra: make test-all installs it
def test_the_submitit_launcher_runs_each_job_as_a_submitit_job_under_one_parent(tmp_path):
    """submitit_local: the launcher and job files that SLURM uses (submitit_slurm), with
    jobs started as processes here instead of by sbatch."""
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason="pip install -e '.[slurm]' (make test-all does)",
    )
    done = Sweep(
        tmp_path, "-m", "hydra/launcher=submitit_local", "train.epochs=1", "train.batch_size=16,32"
    )
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert sorted(map(_combo, children)) == [("1", "16"), ("1", "32")]
    assert {r.info.status for r in children} == {"FINISHED"}
    workers = {r.data.tags[names.OWNER_PID] for r in children}
    assert len(workers) == 2 and done.parent.data.tags[names.OWNER_PID] not in workers
    assert len(list((done.folder / ".submitit").glob("*/*_result.pkl"))) == 2
    assert done.parent.info.status == "FINISHED" and done.parent.data.metrics["jobs"] == 2


@pytest.mark.e2e  # a whole run of the sweep's entry point, end to end: slow (13 s)
def test_without_multirun_it_is_one_plain_run(tmp_path):
    done = Sweep(tmp_path, "train.epochs=1")
    assert done.returncode == 0, done.output[-3000:]
    (run,) = done.runs
    assert not done.parents and "mlflow.parentRunId" not in run.data.tags
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "1"
    assert (tmp_path / "run/model.keras").is_file()


@pytest.mark.parametrize("multirun", [False, True])
def test_a_bad_base_config_stops_before_any_run(tmp_path, multirun):
    done = Sweep(tmp_path, *(["-m", "train.seed=1,2"] if multirun else []), "train.epochs=0")
    assert done.returncode == 1
    assert "train.epochs must be >= 1, got 0" in done.output
    assert not done.store_made


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (["replicates=0"], "replicates must be >= 1, got 0"),
        (
            ["replicates=3", "train.seed=1,2"],
            "replicates=3 derives the seeds from one train.seed, and train.seed is swept too",
        ),
    ],
)
def test_bad_replicates_stop_before_any_run(tmp_path, overrides, said):
    done = Sweep(tmp_path, "-m", "train.epochs=1", *overrides)
    assert done.returncode == 1
    assert said in done.output
    assert not done.parents


@pytest.mark.parametrize(
    ("argv", "expanded"),
    [
        (["-m", "train.epochs=1"], ["-m", "train.epochs=1"]),
        (["-m", "replicates=3"], ["-m", "replicates=3", "train.seed=42,43,44"]),
        (
            ["-m", "train.epochs=1,2", "train.seed=7", "replicates=2"],
            ["-m", "train.epochs=1,2", "replicates=2", "train.seed=7,8"],
        ),
        (["-m", "grid=overfitting"], ["-m", "grid=overfitting", "train.seed=42,43,44"]),
        (["-m", "grid=overfitting", "replicates=1"], ["-m", "grid=overfitting", "replicates=1"]),
    ],
)
def test_replicates_sweep_the_seeds_from_train_seed(argv, expanded):
    assert replicates.expand(argv) == expanded


def test_replicates_without_multirun_are_refused():
    with pytest.raises(config.ConfigError, match="replicates=2 asks for 2 runs: add -m"):
        replicates.expand(["replicates=2"])


def test_missing_prepared_arrays_are_named_before_any_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = Sweep(tmp_path, "-m", "train.epochs=1,2", prepared=empty)
    assert done.returncode == 1
    assert f"{empty} lacks x_train.npy" in done.output and "dvc repro preprocess" in done.output
    assert not done.store_made


def test_overrides_from_config_then_the_command_line():
    node = OmegaConf.create(
        {
            "sweeper": {"params": {"train.epochs": "5,10", "train.batch_size": "64,128"}},
            "overrides": {
                "task": ["train.epochs=1", "train.seed=range(1,3)", "model.hidden_units=8"]
            },
        }
    )
    given, swept = sweep._overrides(node)
    assert given == {
        "train.epochs": "1",
        "train.batch_size": "64,128",
        "train.seed": "range(1,3)",
        "model.hidden_units": "8",
    }
    assert swept == ["train.batch_size", "train.seed"]


@pytest.mark.parametrize(
    ("sig", "by", "code"), [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)]
)
def test_a_sweep_stopped_midway_ends_its_parent_and_running_job_killed(tmp_path, sig, by, code):
    stage = Stage(tmp_path)
    log = tmp_path / "sweep.log"
    command = stage.command(
        "sweep",
        "-m",
        "train.epochs=100000",
        "train.seed=1,2",
        f"paths.prepared={tmp_path / 'data' / 'prepared'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )
    with log.open("w") as out:
        process = in_a_terminal(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: [r for r in stage.runs() if r.data.metrics.get("loss")],
            "the first job's first epoch",
        )
        process.send_signal(sig)
        assert process.wait(timeout=60) == code
    finally:
        process.kill()
    assert (
        f"sweep stopped by {by}: its parent run and the job running are KILLED" in log.read_text()
    )
    runs = stage.runs()
    assert len(runs) == 2  # the parent and the first job; the second never started
    assert {r.info.status for r in runs} == {"KILLED"}
