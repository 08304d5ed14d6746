"""A job done once is not done again: a sweep counts the FINISHED run of each job's key
(`pipeline.config.jobs`, `tracking.reuse`) instead of training it, so the same command trains
nothing the second time and a wider grid or more seeds train only the new jobs. A FAILED run,
another environment, other data or `reuse=false` train again.

Each sweep runs as a user runs it, in a subprocess, on tiny synthetic digits and the test's own
store; the sweeps of one test follow one another on that store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import preprocess
from pipeline.common import provenance
from pipeline.sweep import report as sweep_report
from pipeline.tracking import names

from .helpers.console import alarming
from .helpers.data import write_prepared
from .helpers.sweep import Sweep

GRID = ("-m", "train.epochs=1", "train.seed=1", "train.batch_size=16,32")
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d"  # a run's end, in the log's lines
MODEL = "mnist"  # tracking.registered_model in conf/


def _sweep(tmp_path: Path, *overrides: str, **given) -> Sweep:
    """A sweep that exits 0; the folder of the sweep before it is kept as multirun-<n>."""
    folder = tmp_path / "multirun"
    if folder.exists():
        folder.rename(tmp_path / f"multirun-{len(list(tmp_path.glob('multirun-*'))) + 1}")
    done = Sweep(tmp_path, *overrides, **given)
    assert done.returncode == 0, done.output[-3000:]
    return done


def _parent(done: Sweep):
    """The newest sweep's parent run: the store holds every sweep of the test."""
    return max(done.parents, key=lambda run: run.info.start_time)


def _trained(done: Sweep) -> list:
    """The runs the newest sweep trained: its parent's child runs."""
    parent = _parent(done).info.run_id
    return [run for run in done.runs if run.data.tags.get(names.PARENT) == parent]


def _by_batch(runs) -> dict[str, str]:
    return {run.data.params["train.batch_size"]: run.info.run_id for run in runs}


def _counts(done: Sweep) -> dict[str, float]:
    metrics = _parent(done).data.metrics
    return {name: metrics[name] for name in (names.JOBS_RUN, names.JOBS_REUSED, names.JOBS_FAILED)}


def _summary(done: Sweep) -> str:
    return (done.folder / sweep_report.MARKDOWN).read_text()


def _reused(done: Sweep) -> set[str]:
    """The runs the newest sweep's parent counts as its jobs done before."""
    tags = _parent(done).data.tags
    return {
        tag.removeprefix(names.REUSED_PREFIX)
        for tag in tags
        if tag.startswith(names.REUSED_PREFIX)
    }


def _keyed(done: Sweep) -> list:
    return [run for run in done.runs if names.JOB_KEY in run.data.tags]


def _assert_the_jobs_point_at(done: Sweep, old: dict[str, str]) -> None:
    """The new sweep's folder: its report lists the old runs as reused, each job's run.json
    names the old run it stands for, and the log says which run it reuses."""
    report = pd.read_csv(done.folder / sweep_report.CSV)
    assert dict(zip(report["run_id"], report["reused"], strict=True)) == {
        run_id: True for run_id in old.values()
    }
    records = [json.loads(path.read_text()) for path in done.folder.glob("*/run.json")]
    assert sorted(r["run_id"] for r in records) == sorted(old.values())
    assert all(r["reused"] is True for r in records)
    for batch, run_id in old.items():
        line = rf"reusing run {run_id} for train.batch_size={batch} \(finished {WHEN}\)"
        assert re.search(line, done.output), done.output[-3000:]


def _assert_nothing_trained(again: Sweep, old: dict[str, str]) -> None:
    """The same sweep again: no run, a FINISHED parent counting the old runs as its jobs, no
    new model version, and still one run of each job in the store."""
    assert _trained(again) == []
    assert _parent(again).info.status == "FINISHED"
    assert _parent(again).data.metrics[names.JOBS] == 2
    assert _counts(again) == {names.JOBS_RUN: 0, names.JOBS_REUSED: 2, names.JOBS_FAILED: 0}
    assert "2 jobs: 0 run, 2 reused, 0 failed." in _summary(again)
    assert _reused(again) == set(old.values())
    _assert_the_jobs_point_at(again, old)
    assert len(again.client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert "is registered already" in again.output
    keyed = _keyed(again)
    assert len(keyed) == 2 and len({run.data.tags[names.JOB_KEY] for run in keyed}) == 2


@pytest.mark.e2e  # four sweeps, the last two train a job each: 33 s
def test_the_same_sweep_again_trains_nothing_a_wider_one_only_the_new_jobs(tmp_path):
    first = _sweep(tmp_path, *GRID)
    old = _by_batch(_trained(first))
    _assert_nothing_trained(_sweep(tmp_path, *GRID), old)
    wider = _sweep(tmp_path, "-m", "train.epochs=1", "train.seed=1", "train.batch_size=16,32,64")
    (new,) = _trained(wider)
    assert new.data.params["train.batch_size"] == "64" and new.info.status == "FINISHED"
    assert _counts(wider) == {names.JOBS_RUN: 1, names.JOBS_REUSED: 2, names.JOBS_FAILED: 0}
    assert "3 jobs: 1 run, 2 reused, 0 failed." in _summary(wider)
    assert _reused(wider) == set(old.values())
    seeds = _sweep(tmp_path, "-m", "train.epochs=1", "train.batch_size=16", "train.seed=1,2")
    (new,) = _trained(seeds)
    assert new.data.params["train.seed"] == "2" and new.data.params["train.batch_size"] == "16"
    assert _reused(seeds) == {old["16"]}
    assert "reusing run " + old["16"] + " for train.seed=1 " in seeds.output
    assert len(_keyed(seeds)) == 4  # 16, 32, 64 with seed 1, and 16 with seed 2


@pytest.mark.e2e  # three sweeps: 26 s
def test_a_failed_run_is_trained_again_and_reuse_false_trains_all(tmp_path):
    first = _sweep(tmp_path, *GRID)
    old = _by_batch(_trained(first))
    first.client.set_terminated(old["16"], "FAILED")
    again = _sweep(tmp_path, *GRID)
    (rerun,) = _trained(again)
    assert rerun.data.params["train.batch_size"] == "16" and rerun.info.status == "FINISHED"
    failed = again.client.get_run(old["16"])
    assert rerun.data.tags[names.JOB_KEY] == failed.data.tags[names.JOB_KEY]
    assert _reused(again) == {old["32"]}
    assert _counts(again) == {names.JOBS_RUN: 1, names.JOBS_REUSED: 1, names.JOBS_FAILED: 0}
    assert names.DUPLICATE_OF not in rerun.data.tags  # the FAILED run is no job done
    fresh = _sweep(tmp_path, *GRID, "reuse=false")
    assert "reusing run" not in fresh.output and _reused(fresh) == set()
    assert _counts(fresh) == {names.JOBS_RUN: 2, names.JOBS_REUSED: 0, names.JOBS_FAILED: 0}
    duplicates = {
        run.data.params["train.batch_size"]: run.data.tags.get(names.DUPLICATE_OF)
        for run in _trained(fresh)
    }
    assert duplicates == {"16": rerun.info.run_id, "32": old["32"]}  # the first FINISHED ones
    assert f"repeats run {old['32']}: tagged {names.DUPLICATE_OF}" in fresh.output
    assert alarming(fresh.output) == [], "a duplicate asked for is no warning"


def _other_data(folder: Path) -> Path:
    """Prepared arrays of another data set: a pixel changed, and its own fingerprint."""
    write_prepared(folder)
    x_train = folder / preprocess.FILES["x_train"]
    pixels = np.load(x_train)
    pixels[0, 0] += 0.5
    np.save(x_train, pixels)
    meta = json.loads((folder / preprocess.META).read_text())
    (folder / preprocess.META).write_text(json.dumps(meta | {"fingerprint": "synthetic-2"}))
    return folder


@pytest.mark.e2e  # three sweeps: 28 s
def test_another_environment_or_other_data_trains_every_job_again(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    here = provenance.environment()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert provenance.environment() != here  # one of the facts a job's key holds
    monkeypatch.delenv("OMP_NUM_THREADS")
    first = _sweep(tmp_path, *GRID)
    old = set(_by_batch(_trained(first)).values())
    threads = _sweep(tmp_path, *GRID, env={"OMP_NUM_THREADS": "1"})
    assert _counts(threads) == {names.JOBS_RUN: 2, names.JOBS_REUSED: 0, names.JOBS_FAILED: 0}
    threads_tag = names.ENV_PREFIX + "omp_num_threads"  # provenance.environment()'s fact
    assert {run.data.tags[threads_tag] for run in _trained(threads)} == {"1"}
    other = _sweep(tmp_path, *GRID, prepared=_other_data(tmp_path / "prepared-2"))
    assert _counts(other) == {names.JOBS_RUN: 2, names.JOBS_REUSED: 0, names.JOBS_FAILED: 0}
    assert {run.data.tags[names.FINGERPRINT] for run in _trained(other)} == {"synthetic-2"}
    assert "reusing run" not in threads.output + other.output
    keyed = _keyed(other)  # three jobs of each batch size, each of its own key
    assert len(keyed) == 6 and len({run.data.tags[names.JOB_KEY] for run in keyed}) == 6
    assert old <= {run.info.run_id for run in keyed}
