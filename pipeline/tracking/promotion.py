"""When a new model version takes `@champion`: only on evidence that it beats the champion on
validation digits both were validated on, never on a gain that seeds alone would give (ten
seeds of one config spread 0.09 points of validation accuracy).

Two models with their predictions on the same digits: exact McNemar on the digits they
disagree on. Two replicated configurations (both with 2+ seeds' validation accuracies):
Welch's t-test over the seeds. Models validated on other digits are never compared: the
champion stays, and the line says how to move it by hand. Pure: no MLflow, Keras or files
here; the registry reads the versions and brings the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from pipeline import PipelineError
from pipeline.tracking import names

LEVEL = 0.05  # the default significance level, as tracking.promotion_level's
CHAMPION = "champion"  # the alias of the version that beat every earlier champion on evidence
PROMOTED, KEPT = "promoted", "kept"  # the `promotion.decision` tag
Correct = tuple[np.ndarray, np.ndarray]  # which validation digits (champion, candidate) got right


@dataclass(frozen=True)
class Validation:
    """The digits a model was validated on: images, integer labels, and their identity (the
    data's fingerprint and the split), enough to say two models saw the same digits."""

    x: np.ndarray
    y: np.ndarray
    digits: str


@dataclass(frozen=True)
class Standing:
    """What a registered version says about how it was validated: on which digits (None:
    unrecorded) and its configuration's replicate validation accuracies (empty: one seed)."""

    version: int
    digits: str | None
    replicates: tuple[float, ...] = ()

    @classmethod
    def of(cls, version: int, tags: Mapping[str, str]) -> Standing:
        try:
            replicates = tuple(float(v) for v in json.loads(tags[names.REPLICATE_VAL_ACCURACIES]))
        except (KeyError, ValueError, TypeError):
            replicates = ()
        return cls(version, tags.get(names.VALIDATION_DIGITS), replicates)

    @property
    def replicated(self) -> bool:
        return len(self.replicates) >= 2


def version_tags(
    validation: Validation | None, replicates: list[float] | None, val_accuracy: float | None
) -> dict[str, str]:
    """The tags a new version is registered with: what the next decision reads back."""
    tags = {names.VALIDATION_DIGITS: validation.digits} if validation is not None else {}
    if replicates:
        tags[names.REPLICATE_VAL_ACCURACIES] = json.dumps([float(v) for v in replicates])
    if val_accuracy is not None:
        tags[names.VERSION_VAL_ACCURACY] = str(val_accuracy)
    return tags


@dataclass(frozen=True)
class Decision:
    """Whether `version` took @champion, the sentence that says why, and the test behind it
    (None where none ran); `against`: the champion it was compared with."""

    version: int
    promoted: bool
    line: str
    test: str | None
    effect: float | None
    p_value: float | None
    against: int | None = None


def decide(
    name: str,
    candidate: Standing,
    champion: Standing | None,
    correct: Callable[[Standing], Correct],
    level: float = LEVEL,
) -> Decision:
    """Promote `candidate` over `champion` only if it is significantly better at `level`;
    `correct(champion)` gives both models' hits on the shared validation digits (asked only
    when McNemar is the test: it loads the champion's model)."""
    from pipeline.analysis import stats

    if champion is None:
        line = f"promoted to @{CHAMPION}: the first version of {name}, no champion to beat"
        return Decision(candidate.version, True, line, None, None, None)
    move = _by_hand(name, candidate)
    if candidate.digits is None or candidate.digits != champion.digits:
        seen = f"this one {candidate.digits or 'none'}, the champion {champion.digits or 'none'}"
        return _kept(
            candidate, champion, f"validated on other digits ({seen}), no paired test; {move}"
        )
    if candidate.replicated and champion.replicated:
        test = stats.welch(champion.replicates, candidate.replicates)
        seeds = f"{len(candidate.replicates)} seeds against {len(champion.replicates)}"
        on = f"in mean validation accuracy over {seeds}"
    else:
        try:
            test = stats.mcnemar(*correct(champion))
        except PipelineError as err:  # a model is gone or will not load
            return _kept(candidate, champion, f"cannot compare the two ({err}); {move}")
        on = f"on {test.n:,} validation digits"
    promoted = test.significant(level) and test.effect > 0
    over = f"promoted to @{CHAMPION} over version {champion.version}: "
    evidence = f"{100 * test.effect:+.2f} points {on}, {_p(test.p_value, level)}"
    line = (over if promoted else _KEPT.format(champion.version)) + evidence
    line += f" ({test.name}, level {level:g})"
    return Decision(
        candidate.version, promoted, line, test.name, test.effect, test.p_value, champion.version
    )


def decision_tags(decision: Decision) -> dict[str, str]:
    """The `promotion.*` tags of a decided version; a value that does not apply is left out."""
    fields = {
        "decision": PROMOTED if decision.promoted else KEPT,
        "test": decision.test,
        "effect": None if decision.effect is None else f"{decision.effect:.6g}",
        "p_value": None if decision.p_value is None else f"{decision.p_value:.6g}",
        "against": decision.against,
        "line": decision.line,
    }
    return {names.PROMOTION_PREFIX + k: str(v) for k, v in fields.items() if v is not None}


_KEPT = "kept the champion (version {}): "


def _kept(candidate: Standing, champion: Standing, why: str) -> Decision:
    line = _KEPT.format(champion.version) + why
    return Decision(candidate.version, False, line, None, None, None, champion.version)


def _by_hand(name: str, candidate: Standing) -> str:
    return (
        "move it by hand: MlflowClient().set_registered_model_alias("
        f"{name!r}, {CHAMPION!r}, {candidate.version})"
    )


def _p(p_value: float, level: float) -> str:
    """`p = 0.31`, `p < 0.001`: with as many digits as it takes to stay on its side of the
    level (0.0496 is not written 0.05 at level 0.05)."""
    if p_value < min(0.001, level):
        return "p < 0.001"
    for digits in (2, 3, 4):
        text = f"{p_value:.{digits}g}"
        if (float(text) < level) == (p_value < level):
            break
    return f"p = {text}"
