"""How sure a number is: intervals and tests, all from scipy and statsmodels. Pure: numbers
in, numbers out; no MLflow, no Keras.

- an accuracy on n digits: a binomial proportion, its 95% Wilson interval (`proportion`);
- a metric over a configuration's seeds: mean, sd and the 95% t interval of the mean
  (`spread`);
- two models on the same digits: exact McNemar on the digits they disagree on (`mcnemar`,
  Dietterich 1998); two configurations over seeds: Welch's t-test (`welch`);
- several comparisons at once: Holm's adjustment (`holm`); how many seeds a difference of a
  measured size needs to be seen (`seeds_needed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import proportion_confint

from pipeline import PipelineError

LEVEL = 0.95  # every interval's confidence
ALPHA = 0.05  # every test's default significance level
POWER = 0.8  # the chance of seeing a real difference that `seeds_needed` plans for
MAX_SEEDS = 10_000  # beyond this, `seeds_needed` says "more than"

MCNEMAR = "exact McNemar"
WELCH = "Welch's t-test"


class TooFewError(PipelineError, ValueError):
    """Not enough replicates for what was asked; the message says how many are needed."""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def proportion(correct: int, total: int, level: float = LEVEL) -> Interval:
    """The Wilson interval of an accuracy of `correct` out of `total` digits."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"{correct} correct of {total}: need 0 <= correct <= total, total > 0")
    low, high = proportion_confint(correct, total, alpha=1 - level, method="wilson")
    # exactly 0 and 1 at the ends, where rounding can leave the accuracy itself outside
    low, high = (0.0 if correct == 0 else low), (1.0 if correct == total else high)
    return Interval(float(low), float(high), level)


@dataclass(frozen=True)
class Spread:
    """A metric over replicates: count, mean, sample sd, range and the t interval of the mean
    (None with fewer than two values)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    min: float
    max: float


def spread(
    values: Sequence[float],
    level: float = LEVEL,
    within: tuple[float, float] = (-math.inf, math.inf),
) -> Spread:
    """Mean, sd and the `level` t interval of the mean of `values` (NaNs left out), the
    interval cut to what the quantity can be (`within`: an accuracy 0 to 1): over two seeds the
    t interval is wide (12.7 sd), and beyond those limits it says nothing."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        raise TooFewError("no values: nothing to summarise")
    mean = float(x.mean())
    if x.size < 2:
        return Spread(1, mean, None, None, None, mean, mean)
    # all equal: their std() can come out as 1e-16 rather than 0 (0.97 * 3 / 3 != 0.97)
    sd = float(x.std(ddof=1)) if np.ptp(x) else 0.0
    if sd == 0:
        low = high = mean
    else:
        sem = sd / math.sqrt(x.size)
        low, high = scipy_stats.t.interval(level, x.size - 1, loc=mean, scale=sem)
        low, high = max(low, within[0]), min(high, within[1])
    return Spread(int(x.size), mean, sd, float(low), float(high), float(x.min()), float(x.max()))


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The `level` t interval of the mean of `values`; a TooFewError for fewer than two."""
    found = spread(values, level)
    if found.low is None or found.high is None:
        raise TooFewError(
            "one seed gives no interval: ask for replicates of at least 2 "
            "(`python -m pipeline.sweep -m replicates=3 ...`)"
        )
    return Interval(found.low, found.high, level)


@dataclass(frozen=True)
class Test:
    """A comparison of b against a: the test's name, b - a (`effect`), its p-value, and what
    it was measured on (`n`: digits for McNemar, seeds per side for Welch)."""

    name: str
    effect: float
    p_value: float
    n: int

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> Test:
    """Exact McNemar of two models on the same digits: `a_correct` and `b_correct` say which
    digits each got right; the effect is b's accuracy - a's."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"McNemar pairs the same digits: got {a.shape} and {b.shape} correct flags"
        )
    table = [
        [int(np.sum(a & b)), int(np.sum(a & ~b))],
        [int(np.sum(~a & b)), int(np.sum(~a & ~b))],
    ]
    result = sm_mcnemar(table, exact=True)
    return Test(MCNEMAR, float(b.mean() - a.mean()), float(result.pvalue), int(a.size))


def welch(a: Sequence[float], b: Sequence[float]) -> Test:
    """Welch's t-test of b's mean against a's over their replicates; the effect is
    mean(b) - mean(a). Values that do not vary at all differ surely (p = 0) or not at all
    (p = 1)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(x.size, y.size) < 2:
        raise TooFewError(
            f"comparing over seeds needs at least 2 on each side, got {x.size} and {y.size}: "
            "ask for replicates=2 or more"
        )
    effect = float(y.mean() - x.mean())
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # not std(): equal floats can give 1e-16
        p_value = 1.0 if effect == 0 else 0.0
    else:
        p_value = float(scipy_stats.ttest_ind(y, x, equal_var=False).pvalue)
    return Test(WELCH, effect, p_value, int(min(x.size, y.size)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values: each compared with the level as it is, the family's chance
    of any false finding stays within the level."""
    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


def seeds_needed(
    difference: float, sd: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Seeds per configuration for Welch's test to see a true `difference` between two
    configurations whose replicates spread by `sd`, with chance `power` at level `alpha`;
    None when the difference is 0 or needs more than MAX_SEEDS."""
    if difference == 0 or not sd or math.isnan(sd):
        return None
    effect = abs(difference) / sd
    try:
        n = TTestIndPower().solve_power(effect_size=effect, alpha=alpha, power=power)
    except (ValueError, RuntimeError):
        return None
    n = float(np.asarray(n).item())
    if math.isnan(n) and effect > 1:
        # statsmodels searches from 2 seeds up and fails where fewer would do (d above about
        # 6); d = 1 needs 17, so a failure above it is on that side
        return 2
    if math.isnan(n) or n > MAX_SEEDS:
        return None
    return max(2, math.ceil(n))
