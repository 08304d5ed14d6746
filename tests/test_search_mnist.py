"""A search as users run it, on real MNIST: `python -m pipeline.search` with two knobs and
rungs of 1 and 3 epochs, stopped by Ctrl-C and run again with the same command, which goes on
where it stopped and trains no job twice; then run once more, when it trains nothing and
finds the same. Its parent run carries the report and the picture, each trial's jobs are its
children with their rungs, and the search adds one registry version."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from pipeline.search import OUTCOME
from pipeline.search import report as search_report
from pipeline.tracking import names

from .helpers.processes import ctrl_c, in_a_terminal, wait_for

pytestmark = pytest.mark.e2e

SEARCH = (
    sys.executable,
    "-m",
    "pipeline.search",
    "model.dropout=interval(0, 0.5)",
    "train.optimizer=choice(rmsprop, adam)",
    "hydra.sweeper.trials=4",
    "hydra.sweeper.max_epochs=3",
    "hydra.sweeper.contenders=2",
    "hydra.sweeper.seeds=2",
)


def _jobs(lab) -> list:
    _, runs = lab.runs()
    return [r for r in runs if r.info.status == "FINISHED" and names.JOB_KEY in r.data.tags]


def _parents(lab) -> list:
    _, runs = lab.runs()
    return [r for r in runs if r.data.tags.get(names.SWEEP) == "parent"]


def _versions(lab) -> int:
    client, _ = lab.runs()
    return len(client.search_model_versions("name = 'mnist'"))


def _stopped_after_three_jobs(lab, tmp_path) -> int:
    """Ctrl-C once three of the search's jobs are done: it exits 130, its parent KILLED."""
    before = len(_jobs(lab))
    with (tmp_path / "search.log").open("w") as out:
        process = in_a_terminal(
            [*SEARCH, f"hydra.sweep.dir={tmp_path / 'stopped'}"],
            cwd=lab.path,
            env=lab.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: len(_jobs(lab)) >= before + 3, "three jobs done", timeout=300)
        ctrl_c(process)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    assert [p.info.status for p in _parents(lab)] == ["KILLED"]
    return len(_jobs(lab)) - before


def _reported(lab, parent, folder) -> None:
    """The parent's description is the report, its artifacts the report's files."""
    note = parent.data.tags[names.NOTE]
    assert note.startswith("# Search: 4 trials over rungs of [1, 3] epochs")
    assert "Best: trial " in note and "On the test digits, the winner " in note
    assert "Welch's t-test" in note
    client, _ = lab.runs()
    listed = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {search_report.MARKDOWN, search_report.PLOT, search_report.CSV} <= listed
    trials = pd.read_csv(folder / search_report.CSV)
    assert len(trials) == 4 and "model.dropout" in trials
    best_run = parent.data.tags[names.BEST_RUN_ID]
    registered = client.search_model_versions(f"name = 'mnist' and run_id = '{best_run}'")
    assert len(registered) == 1, "the version is not the winner's first seed"
    (model,) = client.search_logged_models(
        [parent.info.experiment_id], f"source_run_id = '{best_run}'"
    )
    linked = {m.key for m in model.metrics}  # the Models tab lists them beside it
    assert {names.KEPT_VAL_ACCURACY, names.TEST_ACCURACY} <= linked, linked
    assert model.params["train.optimizer"] in ("rmsprop", "adam")


def test_a_search_stopped_by_ctrl_c_goes_on_with_the_same_command_and_names_its_best(
    lab, tmp_path
):
    before, versions = len(_jobs(lab)), _versions(lab)
    stopped = _stopped_after_three_jobs(lab, tmp_path)
    folder = tmp_path / "resumed"
    output = lab.sh(*SEARCH, f"hydra.sweep.dir={folder}")  # the same command
    done = _jobs(lab)
    keys = Counter(r.data.tags[names.JOB_KEY] for r in done)
    assert set(keys.values()) == {1}, "a job trained twice"
    assert output.count("reusing run ") >= stopped
    parent = _parents(lab)[-1]
    assert parent.info.status == "FINISHED"
    outcome = json.loads((folder / OUTCOME).read_text())
    assert outcome["rungs"] == [1, 3] and len(outcome["trials"]) == 4
    assert {t["state"] for t in outcome["trials"]} <= {"COMPLETE", "PRUNED"}
    epochs = Counter(int(r.data.params["train.epochs"]) for r in done[before:])
    assert epochs[1] == 4 and epochs[3] >= 1, "every trial at the first rung, some at 3"
    _reported(lab, parent, folder)
    assert _versions(lab) == versions + 1, "a search adds one registry version"

    again = lab.sh(*SEARCH, f"hydra.sweep.dir={tmp_path / 'again'}")
    assert " jobs: 0 run, " in again.split("# Search:")[1].splitlines()[0], "it trained again"
    replayed = json.loads((tmp_path / "again" / OUTCOME).read_text())
    assert [t["params"] for t in replayed["trials"]] == [t["params"] for t in outcome["trials"]]
    assert replayed["best"] == outcome["best"]
    assert _versions(lab) == versions + 1, "the same winner registered again"
