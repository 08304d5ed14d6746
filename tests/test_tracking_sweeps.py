"""A sweep's parent run, its record in sweep.json, and ending it when the sweep is stopped."""

from __future__ import annotations

from pipeline.tracking import names, runs, store, sweeps

from .helpers.tracking import get_run


def test_a_sweep_is_a_parent_run_and_a_record_its_jobs_read(tmp_path):
    folder = tmp_path / "multirun" / "x"
    sweep = sweeps.open_sweep(
        "exp", "sweep train.epochs=1,2", {"train.epochs": "1,2"}, ["train.epochs"], folder
    )
    assert sweeps.Sweep.read(folder) == sweep
    assert (sweep.experiment, sweep.swept) == ("exp", ["train.epochs"])
    parent = get_run(sweep.parent_run_id)
    assert parent.info.status == "RUNNING" and parent.info.run_name == "sweep train.epochs=1,2"
    assert parent.data.tags[names.SWEEP] == "parent"
    assert parent.data.tags["sweep_dir"] == str(folder)
    assert parent.data.params == {"train.epochs": "1,2"}
    assert sweeps.latest("exp") == sweep.parent_run_id


def test_a_stopped_sweep_ends_its_own_parent_runs_and_no_one_elses(tmp_path):
    mine = sweeps.open_sweep("exp", "mine", {}, [], tmp_path / "mine").parent_run_id
    client = store.connect()
    other = client.create_run(
        client.get_experiment_by_name("exp").experiment_id,
        tags={names.SWEEP: "parent", **runs.owner(), names.OWNER_PID: "1"},
    ).info.run_id
    assert sweeps.end_own(runs.KILLED) == [mine]
    assert get_run(mine).info.status == "KILLED"
    assert get_run(other).info.status == "RUNNING"
