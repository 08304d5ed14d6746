"""Where overfitting starts, on synthetic validation curves whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analysis import overfitting


def test_a_u_shaped_loss_bottoms_then_overfits_from_where_it_stays_above():
    loss = [0.30, 0.20, 0.15, 0.14, 0.145, 0.16, 0.18, 0.21]
    accuracy = [0.90, 0.94, 0.95, 0.96, 0.965, 0.96, 0.958, 0.955]
    found = overfitting.locate(loss, accuracy)
    assert found.best_val_loss_epoch == 4
    assert found.best_val_accuracy_epoch == 5  # accuracy can peak after loss does
    # 2% above 0.14 is 0.1428: epoch 5's 0.145 is past it, and so is every epoch after.
    assert found.overfitting_onset_epoch == 5
    assert found.as_dict() == {
        "best_val_loss_epoch": 4,
        "best_val_accuracy_epoch": 5,
        "overfitting_onset_epoch": 5,
    }


def test_a_loss_still_falling_never_overfits():
    found = overfitting.locate([0.12, 0.09, 0.08, 0.074, 0.073], [0.96, 0.97, 0.977, 0.979, 0.98])
    assert (found.best_val_loss_epoch, found.overfitting_onset_epoch) == (5, None)


def test_a_single_epoch_is_its_own_best_and_never_overfits():
    found = overfitting.locate([0.12], [0.96])
    assert found == overfitting.Located(1, 1, None)


def test_a_plateau_is_not_overfitting_and_its_first_epoch_is_the_best():
    found = overfitting.locate([0.2, 0.1, 0.1, 0.1, 0.1009], [0.9, 0.97, 0.97, 0.97, 0.97])
    assert found == overfitting.Located(2, 2, None)


def test_a_wobble_back_near_the_minimum_restarts_the_onset():
    loss = [0.2, 0.10, 0.11, 0.101, 0.12, 0.13]  # epoch 4 comes back within 2%
    assert overfitting.onset(loss) == 5
    assert overfitting.onset(loss, tolerance=0.2) == 6  # 0.13 alone is 20% above 0.10
    assert overfitting.onset(loss, tolerance=0.3) is None  # nothing is 30% above


def test_noise_around_a_rising_trend_still_finds_one_onset():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 31)
    loss = 0.07 + 0.0004 * (epochs - 6) ** 2 + rng.normal(0, 0.0005, epochs.size)
    found = overfitting.locate(loss.tolist())
    assert 4 <= found.best_val_loss_epoch <= 8
    assert found.overfitting_onset_epoch is not None
    assert 8 <= found.overfitting_onset_epoch <= 12
    assert all(value > min(loss) * 1.02 for value in loss[found.overfitting_onset_epoch - 1 :])


def test_without_validation_accuracy_there_is_no_best_accuracy_epoch():
    assert overfitting.locate([0.3, 0.2]).best_val_accuracy_epoch is None
    with pytest.raises(ValueError, match="no epochs"):
        overfitting.locate([])
