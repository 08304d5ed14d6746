"""What a sweep's jobs say, with their noise: replicates grouped as configurations, each metric's
mean, sd and 95% interval over seeds, and conclusions stated only where a test supports them
(`pipeline.analysis.stats`). Pure: the sweep report's table in, numbers and sentences out.

A configuration is every param that decides the numbers but the seed (`replicates.decides`).
Two configurations that differ in one param, each with two seeds or more, are compared with
Welch's t-test over their seeds, Holm-adjusted across every comparison of the report; a
difference that is not significant is said to be one the seeds cannot tell apart, with how
many seeds would show a difference of its size. A configuration with one seed is compared
with none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pipeline.analysis import stats
from pipeline.tracking import names

SEED = "seed"
SEEDS = "_seeds"  # suffix: how many seeds a configuration's metric is summarized over
MIN, MAX = "_min", "_max"  # suffixes: the range over its seeds
CONFIGURATION = names.CONFIGURATION  # a column of the configurations' table: its label
FINAL_GAP = names.TRAIN_TEST_GAP_EVALUATED  # the final model's train accuracy - its test accuracy
SUMMARIZED = (
    names.VAL_ACCURACY,
    names.TEST_ACCURACY,
    names.TRAIN_TEST_GAP,
    FINAL_GAP,
    names.BEST_VAL_LOSS_EPOCH,
    names.ONSET,
)
NOT_PARAMS = {"run", "run_id", "status", "reused", "time_s", SEED}
EPOCHS = (names.BEST_VAL_LOSS_EPOCH, names.ONSET)
GAPS = (names.TRAIN_TEST_GAP, FINAL_GAP)


def within(metric: str, group: pd.DataFrame) -> tuple[float, float]:
    """What a summarized metric can be in a group of jobs: an epoch from 1 to the last the
    group trained, a gap -1 to 1, an accuracy 0 to 1."""
    if metric in EPOCHS:
        return 1.0, float(group["epochs"].max()) if "epochs" in group else math.inf
    return (-1.0, 1.0) if metric in GAPS else (0.0, 1.0)


def keys(rows: pd.DataFrame, metrics: tuple[str, ...]) -> list[str]:
    """The params that tell configurations apart: the table's columns but the metrics, the
    run's own and the seed."""
    return [c for c in rows.columns if c not in NOT_PARAMS and c not in metrics]


def label(key_values: dict[str, object]) -> str:
    """`epochs 10, batch size 64`; `all jobs` for a sweep over seeds alone."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in key_values.items()) or "all jobs"


def finished(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["status"] == "FINISHED") & rows[names.VAL_ACCURACY].notna()]


def groups(done: pd.DataFrame, by: list[str]) -> list[tuple[dict[str, object], pd.DataFrame]]:
    if not by:
        return [({}, done)]
    return [
        (dict(zip(by, values if isinstance(values, tuple) else (values,), strict=True)), group)
        for values, group in done.groupby(by, sort=True, dropna=False)  # a param some lack
    ]


def configurations(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per configuration of the finished jobs: its params, seeds, and for each
    summarized metric its mean, sd, 95% interval (`_ci_low`, `_ci_high`) and range."""
    out = []
    for values, group in groups(finished(rows), by):
        row: dict[str, object] = {**values, CONFIGURATION: label(values), "seeds": len(group)}
        for metric in SUMMARIZED:
            present = group[metric].dropna().astype(float).tolist()
            row[metric + SEEDS] = len(present)  # the onset: only the seeds that overfit
            if not present:
                continue
            found = stats.spread(present, within=within(metric, group))
            row |= {
                metric + names.MEAN: found.mean,
                metric + names.SD: found.sd,
                metric + names.CI_LOW: found.low,
                metric + names.CI_HIGH: found.high,
                metric + MIN: found.min,
                metric + MAX: found.max,
            }
        out.append(row)
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Best:
    """The configuration with the highest mean validation accuracy, those the seeds cannot
    tell from it, the test that said so (None when it has one seed, or no other has two),
    and the others it was not tested against: one seed each."""

    label: str
    values: dict[str, object]
    runs: pd.DataFrame  # its finished jobs
    tied: list[str]
    test: str | None
    untested: list[str]


def best(rows: pd.DataFrame, by: list[str], level: float = stats.ALPHA) -> Best | None:
    found = groups(finished(rows), by)
    if not found:
        return None
    means = [float(group[names.VAL_ACCURACY].mean()) for _, group in found]
    top = max(range(len(found)), key=lambda i: means[i])
    values, chosen = found[top]
    others = [(label(v), g) for i, (v, g) in enumerate(found) if i != top]
    tested = [(name, g) for name, g in others if len(g) > 1 and len(chosen) > 1]
    untested = [name for name, g in others if len(g) < 2 or len(chosen) < 2]
    if not tested:
        return Best(label(values), values, chosen, [], None, untested)
    tests = [stats.welch(g[names.VAL_ACCURACY], chosen[names.VAL_ACCURACY]) for _, g in tested]
    adjusted = stats.holm([t.p_value for t in tests])
    tied = [name for (name, _), p in zip(tested, adjusted, strict=True) if p >= level]
    return Best(label(values), values, chosen, tied, stats.WELCH, untested)


# What two configurations one param apart are compared on: (metric, name, unit, up, down).
COMPARED = (
    (FINAL_GAP, "the final model's gap", " points", "grows", "shrinks"),
    (names.TEST_ACCURACY, "test accuracy", "%", "rises", "falls"),
)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _in_points(values: pd.Series, sign: str = "") -> str:
    """`1.39 ± 0.05`: the mean and sd over seeds, in points."""
    found = stats.spread(values.astype(float).tolist())
    sd = "" if found.sd is None else f" ± {100 * found.sd:.2f}"
    return f"{100 * found.mean:{sign}.2f}{sd}"


def _where(group: pd.DataFrame) -> str:
    """Where validation loss bottoms and overfitting starts in the longest jobs of a group,
    over their seeds."""
    longest = group[group["epochs"] == group["epochs"].max()]
    epochs = int(longest["epochs"].iloc[0])
    n = len(longest)
    lowest = ", ".join(str(int(e)) for e in sorted(longest[names.BEST_VAL_LOSS_EPOCH].dropna()))
    seen = sorted(int(e) for e in longest[names.ONSET].dropna())
    text = f"validation loss is lowest at epoch {lowest} of {epochs}"
    text += f" (its {n} seeds)" if n > 1 else ""
    if not seen:
        return text + f", with no overfitting within {epochs} epochs"
    if n == 1:
        return text + f", and overfitting starts at epoch {seen[0]}"
    starts = ", ".join(map(str, seen))
    return text + f", and overfitting starts at epoch {starts} in {len(seen)} of {n} seeds"


@dataclass(frozen=True)
class _Pair:
    where: str  # `batch size 64`
    key: str
    before: tuple[object, pd.DataFrame]
    after: tuple[object, pd.DataFrame]


def _pairs(done: pd.DataFrame, by: list[str]) -> list[_Pair]:
    """Configurations that differ in one param alone, by neighbouring values of it."""
    pairs = []
    for key in by:
        rest = [k for k in by if k != key]
        for values, group in groups(done, rest):
            levels = sorted(group[key].dropna().unique())
            for before, after in zip(levels, levels[1:], strict=False):
                pairs.append(
                    _Pair(
                        label(values),
                        key,
                        (before, group[group[key] == before]),
                        (after, group[group[key] == after]),
                    )
                )
    return pairs


def _compare(
    pair: _Pair, tests: list[stats.Test], adjusted: list[float], level: float, family: int
) -> str:
    """One sentence: how each compared metric moves from one configuration to the other, a
    move stated only when significant; else how many seeds would show it among `family`
    comparisons (planned at level / family, the strictest of Holm's thresholds)."""
    (a, x), (b, y) = pair.before, pair.after
    at = f" at {pair.where}" if pair.where != "all jobs" else ""
    said = []
    for (metric, name, unit, up, down), test, p_value in zip(
        COMPARED, tests, adjusted, strict=True
    ):
        sign = "+" if unit == " points" else ""
        moved = f"{name} {_in_points(x[metric], sign)} → {_in_points(y[metric], sign)}{unit}"
        if p_value < level:
            verb = up if test.effect > 0 else down
            said.append(f"{moved}: {verb} ({_points(test.effect)} points, p = {p_value:.2g})")
            continue
        sd = math.sqrt((x[metric].var(ddof=1) + y[metric].var(ddof=1)) / 2)
        needed = stats.seeds_needed(test.effect, sd, level / family)
        more = f"about {needed} seeds each would show" if needed else "no practical number of"
        more += " a difference this size here" if needed else " seeds would show it"
        said.append(
            f"{moved}: cannot be told apart with {test.n} seeds "
            f"({_points(test.effect)} points, p = {p_value:.2g}; {more})"
        )
    return f"{pair.key.replace('_', ' ')} {a} → {b}{at}: {'; '.join(said)}."


def conclusions(rows: pd.DataFrame, by: list[str], level: float = stats.ALPHA) -> list[str]:
    """Where each configuration bottoms and overfits, then how the final model's gap and test
    accuracy move between configurations one param apart, each with two seeds or more: a move
    stated only when significant."""
    done = finished(rows)
    done = done[done[FINAL_GAP].notna()]
    if done.empty:
        return []
    lines = [
        f"{label(values).capitalize()}: {_where(group)}."
        for values, group in groups(done, [k for k in by if k != "epochs"])
    ]
    candidates = _pairs(done, by)
    pairs = [p for p in candidates if len(p.before[1]) > 1 and len(p.after[1]) > 1]
    if not candidates:
        return lines
    if not pairs:
        few = "No two configurations one param apart have two seeds each"
        if done.groupby(by).size().max() == 1:
            few = "One seed per configuration"
        return [
            *lines,
            f"{few}: no difference between configurations can be told from the seeds' noise "
            "here; ask for replicates (`replicates=3`) to test them.",
        ]
    return lines + _differences(pairs, len(candidates) - len(pairs), level)


def _differences(pairs: list[_Pair], skipped: int, level: float) -> list[str]:
    """A sentence per pair, Holm-adjusted across all of them; then the pairs left out (one
    side has a single seed) and how the tests were made."""
    tests = [
        [stats.welch(p.before[1][metric], p.after[1][metric]) for metric, *_ in COMPARED]
        for p in pairs
    ]
    flat = stats.holm([t.p_value for pair in tests for t in pair])
    width = len(COMPARED)
    lines = [
        _compare(pair, found, flat[i * width : (i + 1) * width], level, len(flat))
        for i, (pair, found) in enumerate(zip(pairs, tests, strict=True))
    ]
    if skipped:
        lines.append(
            f"Not compared: {skipped} pair{'s' * (skipped > 1)} of configurations one param "
            "apart where one has a single seed (`replicates=3` would test them)."
        )
    lines.append(
        f"Differences: {stats.WELCH} over seeds at level {level}, differences in "
        f"percentage points, p-values Holm-adjusted across the {len(flat)} comparisons above."
    )
    return lines
