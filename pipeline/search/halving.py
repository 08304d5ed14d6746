"""Successive halving over epochs, asynchronous (ASHA: Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020), decided as Optuna's SuccessiveHalvingPruner
decides: every trial starts at the lowest rung, and goes on to the next as soon as it is among
the top 1/eta of the trials that reached its rung so far (the first always goes on), so no
rung waits for the others. Going on from r to eta x r epochs trains only the epochs beyond r
(the checkpoint cache), to the same bits as from scratch; a trial that stops at a rung is a
finished run of r epochs, reusable as any job."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.config import ConfigError


def rungs(min_epochs: int, max_epochs: int, eta: int = 3) -> list[int]:
    """The epochs of each rung: min_epochs, x eta, x eta^2, ..., up to max_epochs."""
    if not 1 <= min_epochs <= max_epochs or eta < 2:
        raise ConfigError(
            f"rungs need 1 <= min_epochs <= max_epochs and eta >= 2, got min_epochs="
            f"{min_epochs}, max_epochs={max_epochs}, eta={eta}: set hydra.sweeper.min_epochs, "
            "max_epochs and eta (for example 1, 9 and 3)"
        )
    found = [min_epochs]
    while found[-1] * eta <= max_epochs:
        found.append(found[-1] * eta)
    return found


def goes_on(reached: Mapping[int, float], trial: int, eta: int = 3) -> bool:
    """Whether `trial` goes on from a rung: it is among the top max(1, n // eta) of the n
    trials that reached the rung (trial -> its validation accuracy there). Ties keep the
    order the trials reached it in."""
    ranked = sorted(reached, key=lambda other: -reached[other])
    return trial in ranked[: max(1, len(ranked) // eta)]
