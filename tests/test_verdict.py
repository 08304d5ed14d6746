"""The three verdicts on synthetic predictions of 10,000 test digits: the bitwise comparison,
the evidence (exact McNemar and the original's interval) and the verdict it earns, with the
line a person reads."""

from __future__ import annotations

import numpy as np

from pipeline.analysis import stats
from pipeline.reproduce import verdict


def test_identical_only_when_every_epoch_metric_and_the_weights_match():
    history = {"loss": {1: 0.5, 2: 0.25}, "val_loss": {1: 0.6, 2: 0.4}}
    rows = [
        {"epoch": 1, "loss": 0.5, "val_loss": 0.6},
        {"epoch": 2, "loss": 0.25, "val_loss": 0.4},
    ]
    assert verdict.compare(history, "a" * 64, rows, "a" * 64) == (
        True,
        f"weights digest {'a' * 12} and 2 epochs of loss, val_loss equal",
    )
    off = [rows[0], {**rows[1], "val_loss": 0.4000000000000001}]
    assert verdict.compare(history, "a" * 64, off, "a" * 64) == (
        False,
        "epoch 2 val_loss: 0.4 recorded, 0.4000000000000001 rebuilt",
    )
    assert verdict.compare(history, "b" * 64, rows, "a" * 64) == (
        False,
        f"weights digest {'b' * 12} recorded, {'a' * 12} rebuilt",
    )
    assert verdict.compare(history, "a" * 64, rows[:1], "a" * 64) == (
        False,
        "2 epochs recorded, 1 rebuilt",
    )


LABELS = np.arange(10_000) % 10  # 10,000 test digits, as MNIST has


def _predictions(wrong: range) -> np.ndarray:
    """LABELS, except the digits at `wrong`, which are predicted one too high."""
    predicted = LABELS.copy()
    predicted[wrong] = (predicted[wrong] + 1) % 10
    return predicted


ORIGINAL = _predictions(range(0, 209))  # 97.91% right, as the committed run


def test_the_same_bits_are_identical_whatever_the_predictions():
    weighed = verdict.weigh(LABELS, ORIGINAL, ORIGINAL)
    found = verdict.judge(True, "weights digest aaaaaaaaaaaa and 1 epoch of loss equal", weighed)
    assert (found.name, found.exit_code) == ("identical", 0)
    assert found.detail == "weights digest aaaaaaaaaaaa and 1 epoch of loss equal"
    assert found.evidence is not None and found.evidence.test.p_value == 1.0


def test_other_bits_with_results_that_agree_are_equivalent():
    # As on the other CPU: 60 digits go right and 56 others wrong, 97.95% against 97.91%.
    rebuilt = _predictions(range(60, 265))
    weighed = verdict.weigh(LABELS, ORIGINAL, rebuilt)
    assert isinstance(weighed, verdict.Evidence)
    found = verdict.judge(False, "epoch 1 val_loss: 0.1 recorded, 0.1000001 rebuilt", weighed)
    assert (found.name, found.exit_code) == ("equivalent", 3)
    assert weighed.test == stats.mcnemar(ORIGINAL == LABELS, rebuilt == LABELS)
    low, high = weighed.interval.low, weighed.interval.high
    assert found.detail == (
        "the bits differ (epoch 1 val_loss: 0.1 recorded, 0.1000001 rebuilt); test accuracy "
        f"{100 * weighed.rebuilt:.2f}% against 97.91% (95% interval {100 * low:.2f} to "
        f"{100 * high:.2f}), exact McNemar on 10,000 test digits (60 right in the rebuild "
        f"alone, 56 in the original alone) p = {weighed.test.p_value:.2f}"
    )
    assert weighed.rebuilt == 0.9795 and 0.05 <= weighed.test.p_value < 1


def test_a_significant_difference_diverges_and_says_why():
    worse = _predictions(range(0, 309))  # the same 209 mistakes and 100 more: 96.91%
    found = verdict.judge(
        False, "weights digest a recorded, b rebuilt", verdict.weigh(LABELS, ORIGINAL, worse)
    )
    assert (found.name, found.exit_code) == ("diverged", 4)
    assert found.detail.startswith(
        "the bits differ (weights digest a recorded, b rebuilt); test accuracy 96.91% against "
        "97.91% (95% interval "
    )
    assert found.detail.endswith(
        "exact McNemar on 10,000 test digits (0 right in the rebuild alone, 100 in the original "
        "alone) p < 0.001: the difference is significant at 0.05 "
        "and the rebuild's accuracy is outside the original's interval"
    )


def test_many_disagreements_that_cancel_out_pass_mcnemar_but_not_the_interval():
    # 200 digits go right, 235 others go wrong: McNemar's p is above 0.05, the accuracy
    # (97.56%) below the original's interval (97.61 to 98.17).
    shifted = _predictions(range(200, 444))
    weighed = verdict.weigh(LABELS, ORIGINAL, shifted)
    assert isinstance(weighed, verdict.Evidence)
    assert not weighed.test.significant() and not weighed.interval.contains(weighed.rebuilt)
    found = verdict.judge(False, "2 epochs recorded, 1 rebuilt", weighed)
    assert found.name == "diverged"
    assert found.detail.endswith(": the rebuild's accuracy is outside the original's interval")


def test_without_evidence_other_bits_diverge_with_the_reason():
    found = verdict.judge(False, "weights digest a recorded, b rebuilt", "no predictions here")
    assert (found.name, found.exit_code, found.evidence) == ("diverged", 4, None)
    assert found.detail == (
        "the bits differ (weights digest a recorded, b rebuilt); equivalence untested: no "
        "predictions here"
    )
    assert verdict.weigh(LABELS, ORIGINAL, ORIGINAL[:9_000]) == (
        "the test data has 10,000 digits, the run predicted 10,000 and the rebuild 9,000: not "
        "the same digits"
    )
