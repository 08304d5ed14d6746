"""Seeds race before a best is named: a challenger that looks better than the incumbent on
its first seed is trained on more, one seed at a time on each side, until Welch's test over
them says it is worse or better, or both sides reach the most seeds allowed (then the two
are tied: the noise hides any difference). The race looks at the test once per seed added,
so each look is held to the level divided by the looks there can be (Bonferroni): a
challenger better only by noise is crowned no more often than the level says."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.analysis import stats


class Outcome(enum.Enum):
    worse = "worse"  # the challenger is out
    better = "better"  # the challenger is the new incumbent
    tied = "tied"  # both have the most seeds and no test tells them apart
    more = "more"  # a seed more on the side that has fewer (the challenger if equal)


@dataclass(frozen=True)
class Race:
    outcome: Outcome
    test: stats.Test | None  # Welch's, once both sides have 2 seeds


def race(
    incumbent: Sequence[float],
    challenger: Sequence[float],
    level: float = stats.ALPHA,
    most: int = 5,
) -> Race:
    """Where the race of `challenger` against `incumbent` (their validation accuracies,
    seed by seed) stands."""
    if min(len(incumbent), len(challenger)) < 2:
        return Race(Outcome.more, None)
    test = stats.welch(incumbent, challenger)
    if test.p_value < level / (most - 1):  # looks at 2, 3, ..., most seeds
        return Race(Outcome.better if test.effect > 0 else Outcome.worse, test)
    if min(len(incumbent), len(challenger)) >= most:
        return Race(Outcome.tied, test)
    return Race(Outcome.more, test)


def side_short(incumbent: Sequence[float], challenger: Sequence[float]) -> str:
    """Which side the next seed goes to: the one with fewer, the challenger when equal."""
    return "incumbent" if len(incumbent) < len(challenger) else "challenger"
