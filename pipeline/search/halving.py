"""Successive halving over epochs, asynchronous (ASHA: Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020): every trial starts at the lowest rung; a trial
goes on to the next rung once it is in the top 1/eta of the trials finished at its rung, so
no rung waits for the others. Going on from r to eta x r epochs trains only the epochs beyond
r (the checkpoint cache), to the same bits as from scratch; a trial that stops at a rung is a
finished run of r epochs, reusable as any job."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.config import ConfigError


def rungs(min_epochs: int, max_epochs: int, eta: int = 3) -> list[int]:
    """The epochs of each rung: min_epochs, x eta, x eta^2, ..., up to max_epochs."""
    if not 1 <= min_epochs <= max_epochs or eta < 2:
        raise ConfigError(
            f"rungs need 1 <= min_epochs <= max_epochs and eta >= 2, got min_epochs="
            f"{min_epochs}, max_epochs={max_epochs}, eta={eta} (for example 1, 9 and 3)"
        )
    found = [min_epochs]
    while found[-1] * eta <= max_epochs:
        found.append(found[-1] * eta)
    return found


def promotable(finished: Mapping[str, float], promoted: set[str], eta: int = 3) -> list[str]:
    """The trials finished at a rung (trial -> its validation accuracy there) that may go on,
    best first: those among the top floor(n / eta) of the n finished not promoted already.
    Ties keep the order the trials finished in."""
    ranked = sorted(finished, key=lambda trial: -finished[trial])
    return [trial for trial in ranked[: len(ranked) // eta] if trial not in promoted]


def next_step(
    finished: list[Mapping[str, float]], promoted: list[set[str]], eta: int = 3
) -> tuple[str, int] | None:
    """What ASHA runs next: (trial, rung) for the best promotion from the highest rung that
    has one, or None for a new trial at the lowest rung. `finished[k]` holds the trials done
    at rung k with their accuracy, `promoted[k]` those already sent on from it; the last
    rung sends nothing on."""
    for rung in range(len(finished) - 2, -1, -1):
        chosen = promotable(finished[rung], promoted[rung], eta)
        if chosen:
            return chosen[0], rung + 1
    return None
