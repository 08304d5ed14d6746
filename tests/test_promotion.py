"""The champion rule on its own: which test decides, what the line says, which tags record it.
No MLflow, no Keras: hits on validation digits and replicate accuracies are given."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.tracking import names, promotion
from pipeline.tracking.promotion import Standing

DIGITS = "06b0d1f124c4:0.1"


def hits(right: int, total: int = 6000, offset: int = 0) -> np.ndarray:
    """`right` digits of `total` right, starting at `offset`: where two such sets overlap
    decides the discordant pairs."""
    flags = np.zeros(total, dtype=bool)
    flags[offset : offset + right] = True
    return flags


def never(champion: Standing) -> promotion.Correct:
    raise AssertionError("the champion's model was loaded where no paired test applies")


def decide(candidate: Standing, champion: Standing | None, correct=never, level=0.05):
    return promotion.decide("mnist", candidate, champion, correct, level)


def test_the_first_version_becomes_champion_and_says_so():
    decision = decide(Standing(1, DIGITS), None)
    assert decision.promoted and decision.against is None and decision.test is None
    assert decision.line == (
        "promoted to @champion: the first version of mnist, no champion to beat"
    )


def test_a_gain_within_noise_keeps_the_champion():
    # 5,820 against 5,835 right of 6,000: 15 more, on 20 against 35 discordant digits.
    champion, candidate = hits(5820, offset=0), hits(5835, offset=20)
    decision = decide(Standing(4, DIGITS), Standing(3, DIGITS), lambda _: (champion, candidate))
    assert not decision.promoted
    assert decision.effect == pytest.approx(15 / 6000)
    assert 0.05 < decision.p_value < 0.1
    assert decision.line == (
        "kept the champion (version 3): +0.25 points on 6,000 validation digits, p = 0.058 "
        "(exact McNemar, level 0.05)"
    )


def test_a_significant_gain_takes_the_alias():
    champion, candidate = hits(5790, offset=0), hits(5904, offset=6)
    decision = decide(Standing(4, DIGITS), Standing(3, DIGITS), lambda _: (champion, candidate))
    assert decision.promoted and decision.against == 3 and decision.test == "exact McNemar"
    assert decision.line == (
        "promoted to @champion over version 3: +1.90 points on 6,000 validation digits, "
        "p < 0.001 (exact McNemar, level 0.05)"
    )


def test_a_significant_loss_keeps_the_champion():
    champion, candidate = hits(5904), hits(5790)
    decision = decide(Standing(4, DIGITS), Standing(3, DIGITS), lambda _: (champion, candidate))
    assert not decision.promoted and decision.p_value < 0.001 and decision.effect < 0
    assert decision.line.startswith("kept the champion (version 3): -1.90 points")


@pytest.mark.parametrize(
    ("candidate", "champion", "seen"),
    [
        ("06b0d1f124c4:0.2", DIGITS, "this one 06b0d1f124c4:0.2, the champion 06b0d1f124c4:0.1"),
        (DIGITS, None, "this one 06b0d1f124c4:0.1, the champion none"),
        (None, DIGITS, "this one none, the champion 06b0d1f124c4:0.1"),
    ],
)
def test_models_validated_on_other_digits_are_never_compared(candidate, champion, seen):
    replicated = (0.97, 0.98)  # Welch does not apply either: other digits, other accuracies
    decision = decide(Standing(5, candidate, replicated), Standing(2, champion, replicated))
    assert not decision.promoted and decision.test is None and decision.against == 2
    assert decision.line == (
        f"kept the champion (version 2): validated on other digits ({seen}), no paired test; "
        "move it by hand: MlflowClient().set_registered_model_alias('mnist', "
        "'champion', 5)"
    )


def test_replicated_configurations_are_compared_by_welch_over_their_seeds():
    champion = Standing(3, DIGITS, (0.9800, 0.9809, 0.9791, 0.9805))
    better = decide(Standing(4, DIGITS, (0.9830, 0.9838, 0.9825)), champion)
    assert better.promoted and better.test == "Welch's t-test"
    assert better.line == (
        "promoted to @champion over version 3: +0.30 points in mean validation accuracy over "
        "3 seeds against 4, p = 0.003 (Welch's t-test, level 0.05)"
    )
    noise = decide(Standing(5, DIGITS, (0.9802, 0.9795, 0.9810)), champion)
    assert not noise.promoted and noise.test == "Welch's t-test" and noise.p_value > 0.5


def test_one_side_with_one_seed_falls_back_to_mcnemar():
    calls = []
    champion = Standing(3, DIGITS, (0.980, 0.981))

    def correct(found):
        calls.append(found.version)
        return hits(5800), hits(5800)

    decision = decide(Standing(4, DIGITS, (0.99,)), champion, correct)
    assert calls == [3] and decision.test == "exact McNemar" and not decision.promoted


@pytest.mark.parametrize(
    ("p_value", "level", "written"),
    [(0.31, 0.05, "p = 0.31"), (0.0496, 0.05, "p = 0.0496"), (0.0004, 0.05, "p < 0.001")],
)
def test_a_p_value_is_written_on_its_side_of_the_level(p_value, level, written):
    assert promotion._p(p_value, level) == written


def test_the_decision_tags_hold_what_the_line_says():
    champion, candidate = hits(5790, offset=0), hits(5904, offset=6)
    decision = decide(Standing(4, DIGITS), Standing(3, DIGITS), lambda _: (champion, candidate))
    tags = promotion.decision_tags(decision)
    prefix = names.PROMOTION_PREFIX
    assert tags[prefix + "decision"] == "promoted" and tags[prefix + "against"] == "3"
    assert tags[prefix + "test"] == "exact McNemar" and tags[prefix + "line"] == decision.line
    assert float(tags[prefix + "effect"]) == pytest.approx(0.019)
    assert float(tags[prefix + "p_value"]) < 0.001
    first = promotion.decision_tags(decide(Standing(1, DIGITS), None))
    assert sorted(first) == [prefix + "decision", prefix + "line"]


def test_a_versions_standing_reads_its_tags_and_shrugs_off_bad_ones():
    tags = {names.VALIDATION_DIGITS: DIGITS, names.REPLICATE_VAL_ACCURACIES: "[0.98, 0.981]"}
    assert Standing.of(7, tags) == Standing(7, DIGITS, (0.98, 0.981))
    assert Standing.of(7, tags).replicated
    broken = {names.REPLICATE_VAL_ACCURACIES: "0.98,0.981"}
    assert Standing.of(7, broken) == Standing(7, None, ())
    written = promotion.version_tags(None, [0.98, 0.981], 0.98)
    assert json.loads(written[names.REPLICATE_VAL_ACCURACIES]) == [0.98, 0.981]
    assert names.VALIDATION_DIGITS not in written
