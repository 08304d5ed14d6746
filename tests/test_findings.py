"""pipeline/sweep/findings.py: replicates grouped as configurations, and conclusions stated only
where Welch's t-test over seeds supports them, on synthetic sweeps with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.sweep import findings
from pipeline.tracking import names


def _rows(jobs: list[dict]) -> pd.DataFrame:
    """A sweep report's table (`sweep_report.table`) of finished jobs."""
    rows = pd.DataFrame(
        [
            {
                "run": f"job {i}",
                "run_id": f"r{i}",
                "status": job.pop("status", "FINISHED"),
                names.VAL_ACCURACY: 0.98,
                names.TEST_ACCURACY: 0.978,
                names.TRAIN_TEST_GAP: job.get(findings.FINAL_GAP, 0.01),
                findings.FINAL_GAP: None,
                names.BEST_VAL_LOSS_EPOCH: 3,
                names.ONSET: None,
                "time_s": 1.0,
                **job,
            }
            for i, job in enumerate(jobs)
        ]
    )
    return rows


def _replicates(epochs: int, batch: int, gaps: list[float], **more) -> list[dict]:
    return [
        {"epochs": epochs, "batch_size": batch, "seed": 42 + i, findings.FINAL_GAP: gap, **more}
        for i, gap in enumerate(gaps)
    ]


def _around(mean: float, sd: float) -> list[float]:
    """Three seeds with exactly this mean and sample sd."""
    return [mean - sd, mean, mean + sd]


def test_replicates_are_one_configuration_with_mean_sd_and_interval():
    rows = _rows(_replicates(5, 128, _around(0.013, 0.001)) + _replicates(10, 128, [0.02] * 3))
    by = findings.keys(rows, findings.SUMMARIZED + (names.TRAIN_ACCURACY, names.TEST_LOSS))
    table = findings.configurations(rows, by)
    assert table["configuration"].tolist() == [
        "epochs 5, batch size 128",
        "epochs 10, batch size 128",
    ]
    assert table["seeds"].tolist() == [3, 3]
    first = table.iloc[0]
    assert first[findings.FINAL_GAP + names.MEAN] == pytest.approx(0.013)
    assert first[findings.FINAL_GAP + names.SD] == pytest.approx(0.001)
    # t(0.975, 2) = 4.303: the interval of a mean of three seeds is wide
    half = 4.303 * 0.001 / np.sqrt(3)
    assert first[findings.FINAL_GAP + names.CI_LOW] == pytest.approx(0.013 - half, rel=1e-3)
    assert first[findings.FINAL_GAP + names.CI_HIGH] == pytest.approx(0.013 + half, rel=1e-3)


def test_a_clear_difference_is_stated_with_its_test_and_noise_is_not():
    rows = _rows(
        _replicates(5, 64, _around(0.010, 0.001))
        + _replicates(10, 64, _around(0.020, 0.0005))  # +1 point: far beyond the noise
        + _replicates(5, 128, _around(0.011, 0.001))  # +0.1 point on batch 64: d = 1
        + _replicates(10, 128, _around(0.0205, 0.0005))
    )
    by = ["epochs", "batch_size"]
    lines = findings.conclusions(rows, by)
    grows = [line for line in lines if line.startswith("epochs 5 → 10 at batch size 64")]
    assert (
        grows and "gap +1.00 ± 0.10 → +2.00 ± 0.05 points: grows (+1.00 points, p = " in grows[0]
    )
    tied = [line for line in lines if line.startswith("batch size 64 → 128 at epochs 5")]
    # d = 1 needs 17 seeds a side for 80% power at 0.05 (Cohen's tables); among the report's 8
    # comparisons, planned at 0.05 / 8, it needs 28
    assert tied and "cannot be told apart with 3 seeds" in tied[0], tied
    assert "about 28 seeds each would show a difference this size here" in tied[0]
    assert lines[-1].startswith("Differences: Welch's t-test over seeds at level 0.05")
    assert not any("smaller batches" in line or "overfit more" in line for line in lines)


def test_one_seed_per_configuration_states_no_difference():
    rows = _rows(
        [
            {"epochs": 5, "batch_size": 64, findings.FINAL_GAP: 0.010},
            {"epochs": 10, "batch_size": 64, findings.FINAL_GAP: 0.030},
        ]
    )
    lines = findings.conclusions(rows, ["epochs", "batch_size"])
    assert lines[0].startswith("Batch size 64: validation loss is lowest at epoch 3 of 10")
    assert "grows" not in " ".join(lines)
    assert "ask for replicates" in lines[-1]


def test_the_onset_is_counted_over_seeds():
    jobs = _replicates(10, 64, [0.01] * 3)
    for job, onset in zip(jobs, (8, 9, None), strict=True):
        job[names.ONSET] = onset
    lines = findings.conclusions(_rows(jobs), ["epochs", "batch_size"])
    assert lines[0] == (
        "Batch size 64: validation loss is lowest at epoch 3, 3, 3 of 10 (its 3 "
        "seeds), and overfitting starts at epoch 8, 9 in 2 of 3 seeds."
    )


def test_best_is_a_set_of_the_configurations_tied_with_it():
    rows = _rows(
        [
            *[
                dict(job, **{names.VAL_ACCURACY: v})
                for job, v in zip(
                    _replicates(5, 64, [0.01] * 3), _around(0.9810, 0.0005), strict=True
                )
            ],
            *[
                dict(job, **{names.VAL_ACCURACY: v})
                for job, v in zip(
                    _replicates(5, 128, [0.01] * 3), _around(0.9808, 0.0005), strict=True
                )
            ],
            *[
                dict(job, **{names.VAL_ACCURACY: v})
                for job, v in zip(
                    _replicates(5, 256, [0.01] * 3), _around(0.9700, 0.0005), strict=True
                )
            ],
        ]
    )
    best = findings.best(rows, ["epochs", "batch_size"])
    assert best is not None
    assert best.label == "epochs 5, batch size 64"
    assert best.tied == ["epochs 5, batch size 128"], "within noise: tied; a point below: not"
    assert best.test == "Welch's t-test"
    one_seed = findings.best(rows[rows["seed"] == 42], ["epochs", "batch_size"])
    assert one_seed is not None and one_seed.test is None and one_seed.tied == []


def test_failed_jobs_are_left_out():
    rows = _rows([{"epochs": 5, "batch_size": 64, "status": "FAILED"}])
    assert findings.conclusions(rows, ["epochs", "batch_size"]) == []
    assert findings.best(rows, ["epochs", "batch_size"]) is None


def test_a_single_seed_configuration_leaves_the_others_tested():
    """`make run`'s one seed beside a grid of 3-seed configurations: the others are tested."""
    jobs = _replicates(5, 64, _around(0.010, 0.001)) + _replicates(5, 128, _around(0.020, 0.001))
    jobs += _replicates(5, 256, [0.015])
    for job, val in zip(jobs, [0.970, 0.971, 0.972, 0.980, 0.981, 0.982, 0.990], strict=True):
        job[names.VAL_ACCURACY] = val
    rows = _rows(jobs)
    by = ["epochs", "batch_size"]
    lines = findings.conclusions(rows, by)
    moved = [line for line in lines if line.startswith("batch size 64 → 128 at epochs 5:")]
    assert len(moved) == 1 and "gap +1.00 ± 0.10 → +2.00 ± 0.10 points: grows" in moved[0]
    assert "Not compared: 1 pair of configurations one param apart" in lines[-2]
    assert not any("One seed per configuration" in line for line in lines)
    best = findings.best(rows, by)
    assert best is not None and best.label == "epochs 5, batch size 256"
    assert best.test is None, "one seed is not tested"
    best = findings.best(rows[rows["batch_size"] != 256], by)
    assert best is not None and best.test == "Welch's t-test" and best.untested == []
    alone = findings.best(rows.iloc[[0, 1, 2, 6]].assign(**{names.VAL_ACCURACY: 0.9}), by)
    assert alone is not None and len(alone.runs) == 3, "the best has 3 seeds"
    assert (alone.test, alone.untested) == (None, ["epochs 5, batch size 256"])


def test_the_best_epoch_interval_stays_within_the_epochs_trained():
    jobs = _replicates(5, 64, [0.01, 0.011])
    for job, epoch in zip(jobs, [4, 5], strict=True):
        job[names.BEST_VAL_LOSS_EPOCH] = epoch
    (row,) = findings.configurations(_rows(jobs), ["epochs", "batch_size"]).to_dict("records")
    low, high = (row[names.BEST_VAL_LOSS_EPOCH + s] for s in (names.CI_LOW, names.CI_HIGH))
    assert (low, high) == (1, 5)
    assert 0 <= row[names.VAL_ACCURACY + names.CI_LOW] <= row[names.VAL_ACCURACY + names.MEAN]
