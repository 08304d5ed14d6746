"""Sweeps that resume, as users run them: on real MNIST, a sweep stopped by Ctrl-C and run
again trains only the jobs it had not finished; a changed line of the training code reuses
nothing; on the team server, two sweeps of one grid started together leave each job one whole
run, any other marked as its duplicate."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from mlflow import MlflowClient

from pipeline.tracking import names

from .helpers.data import write_prepared
from .helpers.processes import ctrl_c, in_a_terminal, wait_for
from .helpers.project import Project
from .helpers.servers import Server, reachable_folder, require_postgres

SWEEP = (sys.executable, "-m", "pipeline.sweep", "-m", "train.epochs=1")
GRID = "train.batch_size=1024,512,64"  # not 128: the session's run did that one


def _finished_jobs(lab: Project) -> list:
    _, runs = lab.runs()
    return [r for r in runs if r.info.status == "FINISHED" and names.JOB_KEY in r.data.tags]


def _newest_parent(lab: Project):
    _, runs = lab.runs()
    return [r for r in runs if r.data.tags.get(names.SWEEP) == "parent"][-1]


@pytest.mark.e2e
def test_a_sweep_stopped_by_ctrl_c_resumes_with_the_same_command(lab, tmp_path):
    before = len(_finished_jobs(lab))  # the session's one `dvc exp run`
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        process = in_a_terminal(
            [*SWEEP, GRID], cwd=lab.path, env=lab.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: len(_finished_jobs(lab)) == before + 2, "two jobs done", timeout=300)
        ctrl_c(process)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    stopped = _newest_parent(lab)
    assert stopped.info.status == "KILLED"

    output = lab.sh(*SWEEP, GRID)  # the same command
    done = _finished_jobs(lab)
    assert len(done) == before + 3, "only the job not finished ran"
    assert output.count("reusing run ") == 2 and output.count("training 1 epochs") == 1
    keys = Counter(r.data.tags[names.JOB_KEY] for r in done)
    assert set(keys.values()) == {1}, "a job with two finished runs"
    parent = _newest_parent(lab)
    assert parent.info.run_id != stopped.info.run_id and parent.info.status == "FINISHED"
    counts = {name: parent.data.metrics[name] for name in (names.JOBS, names.JOBS_REUSED)}
    assert counts == {names.JOBS: 3, names.JOBS_REUSED: 2}
    assert "3 jobs: 1 run, 2 reused, 0 failed." in parent.data.tags[names.NOTE]


@pytest.mark.e2e
def test_seeds_added_by_later_commands_extend_one_configuration(lab):
    """The README's order: `dvc repro` (the session's run, seed 42), then `replicates=3`, then
    a grid with `replicates=3` over the same default: one configuration with all its seeds."""
    seeds = lab.sh(*SWEEP, "replicates=3")
    assert "3 jobs (1 configuration x 3 seeds): 2 run, 1 reused, 0 failed." in seeds
    assert "replicates" not in _newest_parent(lab).data.tags[names.NOTE].split("Jobs:")[1]

    grid = lab.sh(*SWEEP, "train.batch_size=128,1024", "replicates=3")
    note = _newest_parent(lab).data.tags[names.NOTE]
    assert note.startswith("6 jobs (2 configurations x 3 seeds): 3 run, 3 reused, 0 failed.")
    assert "Best by mean validation accuracy" in note and "Welch's t-test" in note
    compared = [line for line in note.splitlines() if line.startswith("- batch size 128 → 1024")]
    assert len(compared) == 1 and "p = " in compared[0], "the two configurations are tested"
    assert "One seed" not in note and "not tested" not in note
    decisions = [line for line in grid.splitlines() if "registered" in line]
    assert len(decisions) == 1, decisions


def _sweep(lab: Project, command: list[str], log, delay: float | None = None):
    """Run `command` as a terminal does, Ctrl-C after `delay` seconds (never: None); its exit
    status, its output and how long it took after the Ctrl-C (or in all)."""
    with log.open("w") as out:
        process = in_a_terminal(
            command, cwd=lab.path, env=lab.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        started = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            ctrl_c(process)
            started = time.monotonic()
        code = process.wait(timeout=300)
        return code, log.read_text(), time.monotonic() - started
    finally:
        process.kill()


@pytest.mark.e2e
def test_ctrl_c_at_any_moment_of_a_sweep_stops_it_cleanly_and_the_same_command_resumes(
    lab, tmp_path
):
    """From its imports to its report, through DVC's preprocess, the store's opening, a job's
    start and its training: one line, exit 130, no traceback, every run in a true state."""
    command = [*SWEEP, "train.batch_size=2048,1024", "model.hidden_units=24"]  # jobs of its own
    log = tmp_path / "sweep.log"
    code, output, whole = _sweep(lab, [*command, "reuse=false"], log)
    assert code == 0, output[-3000:]
    for fraction in (0.02, 0.08, 0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 0.9):
        code, output, took = _sweep(lab, [*command, "reuse=false"], log, fraction * whole)
        at = f"Ctrl-C at {fraction * whole:.1f} s of {whole:.1f}:\n{output[-3000:]}"
        # -2: the sweep was done, and Python was ending, its own handlers gone
        finished = code in (0, -signal.SIGINT) and "sweep report in" in output
        assert code == 130 or finished, at
        assert took < 10, at
        assert "Traceback" not in output and "cannot be read" not in output, at
        assert output.count("stopped by Ctrl-C") == (code == 130), at
        rwlock = lab.path / ".dvc" / "tmp" / "rwlock"
        assert not rwlock.exists() or isinstance(json.loads(rwlock.read_text()), dict), at
        _, runs = lab.runs()
        assert "RUNNING" not in {r.info.status for r in runs}, at

    output = lab.sh(*command)
    assert output.count("reusing run ") == 2 and "2 jobs: 0 run, 2 reused, 0 failed." in output


@pytest.mark.e2e
def test_a_changed_line_of_the_training_code_reuses_nothing(lab):
    lab.sh(*SWEEP, "train.batch_size=512")
    engine = lab.path / "pipeline" / "training" / "engine.py"
    engine.write_text(engine.read_text() + "# a changed line\n")
    output = lab.sh(*SWEEP, "train.batch_size=512")
    assert "reusing run" not in output and "training 1 epochs" in output
    jobs = [r for r in _finished_jobs(lab) if r.data.params["train.batch_size"] == "512"]
    assert len({r.data.tags[names.JOB_KEY] for r in jobs}) == 2


@pytest.mark.server
def test_two_sweeps_of_one_grid_on_the_team_server_leave_whole_runs(tmp_path, monkeypatch):
    require_postgres()
    folder = reachable_folder("mlflow-server-")
    server = Server(folder / "data").wait_up()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        command = [*SWEEP, "train.batch_size=16,32", "model.hidden_units=16"]
        started = []
        for name in ("alice", "bob"):  # their own folders and data, the same digits
            here = tmp_path / name
            prepared, sweeps = write_prepared(here / "prepared"), here / "multirun"
            with (tmp_path / f"{name}.log").open("w") as out:
                started.append(
                    subprocess.Popen(
                        [*command, f"paths.prepared={prepared}", f"hydra.sweep.dir={sweeps}"],
                        cwd=here,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        assert [process.wait(timeout=300) for process in started] == [0, 0]
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    finally:
        assert server.stop() == 0, server.output()[-3000:]
        shutil.rmtree(folder, ignore_errors=True)
    jobs = [r for r in runs if names.JOB_KEY in r.data.tags]
    assert {r.info.status for r in jobs} == {"FINISHED"}
    assert all(names.TEST_ACCURACY in r.data.metrics for r in jobs), "a half record"
    for key in {r.data.tags[names.JOB_KEY] for r in jobs}:
        same = sorted((r for r in jobs if r.data.tags[names.JOB_KEY] == key), key=_started)
        assert not any(names.DUPLICATE_OF in r.data.tags for r in same[:1])
        assert {r.data.tags.get(names.DUPLICATE_OF) for r in same[1:]} <= {same[0].info.run_id}
    parents = [r for r in runs if r.data.tags.get(names.SWEEP) == "parent"]
    assert len(parents) == 2 and {p.data.metrics[names.JOBS] for p in parents} == {2}
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*/multirun/*/run.json")]
    assert len(records) == 4
    assert {r["run_id"] for r in records} <= {r.info.run_id for r in jobs}


def _started(run) -> tuple[int, str]:
    return run.info.start_time, run.info.run_id
