"""pipeline/sweep/report.py: a sweep's table, its best run and its markdown, from what
`mlflow.search_runs` returns for the sweep's children."""

from __future__ import annotations

import pandas as pd

from pipeline.sweep import findings
from pipeline.sweep import report as sweep_report
from pipeline.sweep import text as sweep_text


def _search_runs(rows: list[dict]) -> pd.DataFrame:
    """What `mlflow.search_runs` returns for a sweep's children (params are strings)."""
    start = pd.Timestamp("2026-11-21 10:00", tz="UTC")
    return pd.DataFrame(
        [
            {
                "run_id": f"r{i}",
                "status": row.get("status", "FINISHED"),
                "start_time": start,
                "end_time": start + pd.Timedelta(seconds=10 * (i + 1)),
                "tags.mlflow.runName": f"job {i}",
                "params.train.seed": "42",
                **{f"params.train.{k}": str(row[k]) for k in ("epochs", "batch_size") if k in row},
                **{f"metrics.{k}": row[k] for k in sweep_report.METRICS if k in row},
            }
            for i, row in enumerate(rows)
        ]
    )


def test_report_table_sorts_by_epochs_and_batch_and_best_is_chosen_on_validation():
    runs = _search_runs(
        [
            {
                "epochs": 10,
                "batch_size": 64,
                "train_accuracy": 0.99,
                "val_accuracy": 0.97,
                "test_accuracy": 0.99,
                "overfitting_gap": 0.0,
            },
            {
                "epochs": 5,
                "batch_size": 128,
                "train_accuracy": 0.98,
                "val_accuracy": 0.98,
                "test_accuracy": 0.97,
                "overfitting_gap": 0.01,
            },
            {"status": "FAILED"},
        ]
    )
    rows = sweep_report.table(runs)
    assert rows[["epochs", "batch_size"]].astype(object).values.tolist() == [
        [5, 128],
        [10, 64],
        [pd.NA, pd.NA],
    ]
    assert rows["time_s"].tolist() == [20.0, 10.0, 30.0]
    assert "seed" not in rows, "a param every job shares is not a column"
    best = findings.best(rows, findings.keys(rows, sweep_report.METRICS))
    assert best is not None and best.runs["run_id"].tolist() == ["r1"], "picked on test accuracy"
    text = sweep_text.jobs_table(rows)
    assert "| job 2 " in text and "FAILED" in text and "98.00" in text


def test_report_shows_any_other_swept_param():
    runs = _search_runs([{"epochs": 1, "batch_size": 8}, {"epochs": 1, "batch_size": 8}])
    runs["params.train.optimizer"] = ["adam", "sgd"]
    rows = sweep_report.table(runs)
    assert rows["optimizer"].tolist() == ["adam", "sgd"]
    assert findings.best(rows, ["optimizer"]) is None, "no run has a validation accuracy"


def test_the_summary_gives_each_configuration_over_its_seeds_and_the_tied_set():
    def job(batch, seed, val):
        return {"epochs": 5, "batch_size": batch, "seed": seed, "val_accuracy": val}

    jobs = [job(64, 42, 0.980), job(64, 43, 0.981), job(128, 42, 0.9805), job(128, 43, 0.9812)]
    runs = _search_runs([{**j, "test_accuracy": 0.978} for j in jobs])
    runs["params.train.seed"] = [str(j["seed"]) for j in jobs]
    rows = sweep_report.table(runs)
    by = findings.keys(rows, sweep_report.METRICS)
    assert by == ["epochs", "batch_size"], "the seed is a replicate, not a configuration"
    configurations = findings.configurations(rows, by)
    best = findings.best(rows, by)
    text = sweep_text.summary(rows, configurations, best)
    assert text.startswith("4 jobs (2 configurations x 2 seeds): 4 run, 0 reused, 0 failed.")
    assert (
        "Best by mean validation accuracy: epochs 5, batch size 128: validation 98.08% ± 0.05 "
        "(97.64 to 98.53), test 97.80% ± 0.00 " in text
    )
    assert "Tied with it, the seeds cannot tell them apart (Welch's t-test" in text
    assert text.endswith(": epochs 5, batch size 64.")
    table = sweep_text.configurations_table(configurations)
    assert "| epochs 5, batch size 64  |       2 | 98.05 ± 0.07 (97.41 to 98.69) |" in table


def test_one_seed_gives_no_interval_and_says_so():
    runs = _search_runs(
        [
            {"epochs": 5, "batch_size": 64, "val_accuracy": 0.981, "test_accuracy": 0.978},
            {"epochs": 5, "batch_size": 128, "val_accuracy": 0.980, "test_accuracy": 0.979},
        ]
    )
    rows = sweep_report.table(runs)
    by = findings.keys(rows, sweep_report.METRICS)
    configurations = findings.configurations(rows, by)
    text = sweep_text.summary(rows, configurations, findings.best(rows, by))
    assert text == (
        "2 jobs: 2 run, 0 reused, 0 failed. Best by validation accuracy: epochs 5, batch size "
        "64: validation 98.10%, test 97.80% (one seed: not tested against the others; "
        "`replicates=3` would)."
    )
    assert "(" not in sweep_text.configurations_table(configurations).split("\n")[2]


def test_a_job_still_running_or_never_ended_has_no_time_and_the_report_goes_on():
    """MLflow leaves end_time empty (None) for a run not ended: RUNNING, or one whose end a
    store that was down could not take yet (pipeline.tracking.ends)."""
    runs = _search_runs(
        [
            {"epochs": 1, "batch_size": 8, "val_accuracy": 0.9},
            {"status": "RUNNING", "epochs": 2, "batch_size": 8},
        ]
    )
    runs["end_time"] = [runs["end_time"][0], None]
    rows = sweep_report.table(runs)
    assert rows["time_s"].tolist()[0] == 10.0 and pd.isna(rows["time_s"].tolist()[1])
    assert rows["status"].tolist() == ["FINISHED", "RUNNING"]
    assert "RUNNING" in sweep_text.jobs_table(rows)
    runs["end_time"] = None  # every job unended: the column holds no time at all
    assert sweep_report.table(runs)["time_s"].isna().all()


def test_seeds_asked_for_by_other_commands_are_one_configuration():
    """`make run` (replicates 1), then `replicates=10`, then a grid with `replicates=3`: the
    default's runs differ in `replicates` and `reuse`, which decide no number."""
    jobs = [{"epochs": 5, "batch_size": 128, "val_accuracy": 0.98 + i / 1000} for i in range(4)]
    jobs += [{"epochs": 5, "batch_size": 64, "val_accuracy": 0.981 + i / 1000} for i in range(3)]
    runs = _search_runs([{**j, "test_accuracy": 0.978} for j in jobs])
    runs["params.train.seed"] = ["42", "43", "44", "45", "42", "43", "44"]
    runs["params.replicates"] = ["1", "10", "10", "3", "3", "3", "3"]
    runs["params.reuse"] = ["true", "true", "false", "true", "true", "true", "true"]
    rows = sweep_report.table(runs)
    assert "replicates" not in rows and "reuse" not in rows
    by = findings.keys(rows, sweep_report.METRICS)
    configurations = findings.configurations(rows, by)
    assert configurations["seeds"].tolist() == [3, 4]
    text = sweep_text.summary(rows, configurations, findings.best(rows, by))
    assert text.startswith("7 jobs (2 configurations x 3 to 4 seeds)")
    assert "Best by mean validation accuracy: epochs 5, batch size 64" in text
    table = sweep_text.configurations_table(configurations)
    assert "| epochs 5, batch size 64  |       3 |" in table
