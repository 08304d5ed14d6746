"""Which of three verdicts a rebuild earns (`pipeline.reproduce`), and the evidence for it.

- `identical` (exit 0): the weights' digest and every per-epoch metric are equal to the bit.
- `equivalent` (exit 3): the bits differ, the results do not. On the test digits, exact
  McNemar between the original's and the rebuild's predictions is not significant at
  `stats.ALPHA`, and the rebuild's test accuracy lies inside the original's 95% Wilson
  interval. Another CPU or other XLA flags round differently in the last bit: that is not a
  different model, and a person needs to be told which of the two it is.
- `diverged` (exit 4): anything else, and also when there is no evidence to test with (a
  run from before its predictions were logged, a rebuild.py from before it predicted):
  what cannot be shown to be the same is not called the same.

Both conditions, because each misses what the other sees. McNemar weighs the net shift
against how many digits changed sides: where many did, a shift beyond the original's own
sampling error still passes it, and the interval catches that. The interval weighs only the
net shift: a few digits that all changed the same way pass it, and McNemar catches that.

The exit codes leave 1 to errors (`entry.run`), 2 to argparse's usage and 130/143 to Ctrl-C
and SIGTERM. Pure: the record, the rebuild's numbers and the predictions in, a verdict out;
no MLflow, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.analysis import stats

IDENTICAL, EQUIVALENT, DIVERGED = "identical", "equivalent", "diverged"
EXIT_CODES = {IDENTICAL: 0, EQUIVALENT: 3, DIVERGED: 4}


def compare(
    history: dict[str, dict[int, float]], digest: str, rows: list[dict], rebuilt_digest: str
) -> tuple[bool, str]:
    """Whether the rebuild (its per-epoch `rows` and its weights' digest) equals the record
    (each metric by epoch, and the digest), and how it differs first if not."""
    epochs = {step for steps in history.values() for step in steps}
    if len(epochs) != len(rows):
        return False, f"{len(epochs)} epochs recorded, {len(rows)} rebuilt"
    for row in rows:
        for key, value in row.items():
            was = history.get(key, {}).get(row["epoch"])
            if key != "epoch" and was != value:
                return False, f"epoch {row['epoch']} {key}: {was!r} recorded, {value!r} rebuilt"
    if digest != rebuilt_digest:
        return False, f"weights digest {digest[:12]} recorded, {rebuilt_digest[:12]} rebuilt"
    count = f"{len(epochs)} epoch{'s' * (len(epochs) != 1)}"
    return True, f"weights digest {digest[:12]} and {count} of {', '.join(sorted(history))} equal"


def _p(value: float) -> str:
    """A p-value as a person reads it: two decimals, more only where they matter."""
    if value >= 0.01:
        return f"{value:.2f}"
    return f"{value:.3f}" if value >= 0.001 else "< 0.001"


@dataclass(frozen=True)
class Evidence:
    """The rebuild's test predictions against the original's, on the same digits: the
    test, both accuracies, the original's interval, and the digits that only one of the two
    got right (all McNemar weighs)."""

    test: stats.Test
    original: float
    rebuilt: float
    interval: stats.Interval
    only_rebuilt: int
    only_original: int

    def failed(self) -> list[str]:
        """Which of the two conditions of `equivalent` fail (none: the results agree)."""
        reasons = []
        if self.test.significant(stats.ALPHA):
            reasons.append(f"the difference is significant at {stats.ALPHA}")
        if not self.interval.contains(self.rebuilt):
            reasons.append("the rebuild's accuracy is outside the original's interval")
        return reasons

    def __str__(self) -> str:
        p = _p(self.test.p_value)
        return (
            f"test accuracy {100 * self.rebuilt:.2f}% against {100 * self.original:.2f}% "
            f"({self.interval.level:.0%} interval {100 * self.interval.low:.2f} to "
            f"{100 * self.interval.high:.2f}), {self.test.name} on {self.test.n:,} test digits "
            f"({self.only_rebuilt:,} right in the rebuild alone, {self.only_original:,} in the "
            f"original alone) p {p if p.startswith('<') else '= ' + p}"
        )


def weigh(labels: np.ndarray, original: np.ndarray, rebuilt: np.ndarray) -> Evidence | str:
    """The evidence from the test digits' true `labels` and the labels each model predicted
    for them; why there is none, when they are not predictions of the same digits."""
    labels, original, rebuilt = (np.asarray(a).ravel() for a in (labels, original, rebuilt))
    if not len(labels) == len(original) == len(rebuilt) or not len(labels):
        return (
            f"the test data has {len(labels):,} digits, the run predicted {len(original):,} "
            f"and the rebuild {len(rebuilt):,}: not the same digits"
        )
    right, right_again = original == labels, rebuilt == labels
    return Evidence(
        test=stats.mcnemar(right, right_again),
        original=float(right.mean()),
        rebuilt=float(right_again.mean()),
        interval=stats.proportion(int(right.sum()), len(labels)),
        only_rebuilt=int(np.sum(right_again & ~right)),
        only_original=int(np.sum(right & ~right_again)),
    )


@dataclass(frozen=True)
class Verdict:
    """A verdict's name, what its line says after the name, and the evidence, if any."""

    name: str
    detail: str
    evidence: Evidence | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.name]


def judge(same: bool, difference: str, evidence: Evidence | str) -> Verdict:
    """The verdict on a rebuild: `same` and `difference` from the bitwise comparison (what is
    equal, or the first thing that differs), `evidence` from `weigh` or why there is none."""
    found = evidence if isinstance(evidence, Evidence) else None
    if same:
        return Verdict(IDENTICAL, difference, found)
    bits = f"the bits differ ({difference})"
    if found is None:
        return Verdict(DIVERGED, f"{bits}; equivalence untested: {evidence}")
    failed = found.failed()
    if not failed:
        return Verdict(EQUIVALENT, f"{bits}; {found}", found)
    return Verdict(DIVERGED, f"{bits}; {found}: {' and '.join(failed)}", found)
