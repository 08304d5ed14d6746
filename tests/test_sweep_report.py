"""pipeline/sweep_report.py: a sweep's table, its best run and its markdown, from what
`mlflow.search_runs` returns for the sweep's children."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from pipeline import sweep_report


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
    assert sweep_report.best(rows)["run_id"] == "r1", "the best run is picked on test accuracy"
    text = sweep_report.markdown(rows)
    assert "| job 2 " in text and "FAILED" in text and "98.00" in text


def test_report_shows_any_other_swept_param():
    runs = _search_runs([{"epochs": 1, "batch_size": 8}, {"epochs": 1, "batch_size": 8}])
    runs["params.train.optimizer"] = ["adam", "sgd"]
    rows = sweep_report.table(runs)
    assert rows["optimizer"].tolist() == ["adam", "sgd"]
    assert sweep_report.best(rows) is None, "no run has a validation accuracy"


def test_the_conclusions_are_drawn_from_the_numbers():
    def job(epochs, batch, gap, best, onset=None):
        found = {"overfitting_onset_epoch": onset} if onset else {}
        return {
            "epochs": epochs,
            "batch_size": batch,
            "val_accuracy": 0.97,
            "test_accuracy": 0.97,
            "overfitting_gap_evaluated": gap,
            "best_val_loss_epoch": best,
            **found,
        }

    runs = _search_runs(
        [
            job(5, 64, 0.010, 5),
            job(10, 64, 0.020, 6, onset=8),
            job(5, 128, 0.008, 5),
            job(10, 128, 0.015, 7),
            {"status": "FAILED"},
        ]
    )
    assert sweep_report.conclusions(sweep_report.table(runs)) == [
        "Batch size 64: validation loss is lowest at epoch 6 of 10, and overfitting starts at "
        "epoch 8; the final model's gap grows with epochs: +1.00 points at 5 epochs, +2.00 "
        "points at 10 epochs.",
        "Batch size 128: validation loss is lowest at epoch 7 of 10, with no overfitting within "
        "10 epochs; the final model's gap grows with epochs: +0.80 points at 5 epochs, +1.50 "
        "points at 10 epochs.",
        "At 5 epochs the gap by batch size is +1.00 points at batch 64, +0.80 points at batch "
        "128: smaller batches overfit more.",
        "At 10 epochs the gap by batch size is +2.00 points at batch 64, +1.50 points at batch "
        "128: smaller batches overfit more.",
    ]
    swapped = sweep_report.table(_search_runs([job(5, 64, 0.01, 5), job(5, 128, 0.02, 5)]))
    assert sweep_report.conclusions(swapped)[-1].endswith(": larger ones do.")
    assert sweep_report.conclusions(sweep_report.table(_search_runs([{"status": "FAILED"}]))) == []


def test_the_old_command_names_the_new_one():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.report"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "python -m pipeline.sweep_report" in done.stderr
