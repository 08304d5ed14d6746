"""pipeline/analysis/stats.py: intervals and tests against cases whose answers are known by hand,
from tables, or by simulating many draws and counting how often an interval holds the truth."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipeline.analysis import stats

TRUE_ACCURACY = 0.979  # the default run's test accuracy, about


def _paired(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Correct flags of two models on the same digits, from the four cells of their table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_is_the_exact_binomial_test_on_the_digits_the_models_disagree_on():
    a, b = _paired(both=80, only_a=1, only_b=9, neither=10)
    found = stats.mcnemar(a, b)
    # 10 disagreements, 1 of them a's: twice the chance of 1 or fewer heads in 10 fair tosses
    by_hand = 2 * sum(math.comb(10, k) for k in (0, 1)) / 2**10
    assert by_hand == 0.021484375
    assert found.p_value == pytest.approx(by_hand, rel=1e-12)
    assert found.name == stats.MCNEMAR and found.n == 100
    assert found.effect == pytest.approx(0.08)  # b got 89 right, a 81
    assert found.significant() and not found.significant(alpha=0.01)


def test_mcnemar_sees_nothing_when_the_disagreements_split_evenly():
    a, b = _paired(both=90, only_a=5, only_b=5, neither=0)
    found = stats.mcnemar(a, b)
    assert found.effect == 0 and found.p_value == 1 and not found.significant()


def test_mcnemar_refuses_models_measured_on_different_digits():
    with pytest.raises(ValueError, match=r"same digits: got \(3,\) and \(2,\)"):
        stats.mcnemar(np.ones(3, bool), np.ones(2, bool))


def test_the_wilson_interval_is_the_textbook_formula():
    correct, total = 9791, 10_000
    z = NormalDist().inv_cdf(0.975)
    p = correct / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z / (1 + z**2 / total) * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    found = stats.proportion(correct, total)
    assert (found.low, found.high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert found.level == 0.95 and found.contains(p)
    assert 100 * (found.high - found.low) / 2 == pytest.approx(0.28, abs=0.01)  # ± points


def test_the_wilson_interval_covers_the_true_accuracy_95_times_in_100():
    draws = np.random.default_rng(0).binomial(10_000, TRUE_ACCURACY, size=2000)
    covered = [stats.proportion(int(k), 10_000).contains(TRUE_ACCURACY) for k in draws]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_a_model_with_none_right_still_gets_an_interval_above_zero():
    found = stats.proportion(0, 10)
    assert found.low == 0 and 0.2 < found.high < 0.4


@pytest.mark.parametrize("correct, total", [(0, 3), (3, 3), (10, 10), (0, 10_000)])
def test_an_interval_at_0_or_100_percent_holds_that_accuracy(correct, total):
    assert stats.proportion(correct, total).contains(correct / total)


@pytest.mark.parametrize("correct, total", [(11, 10), (-1, 10), (0, 0)])
def test_proportion_refuses_counts_that_cannot_be(correct, total):
    with pytest.raises(ValueError, match=f"{correct} correct of {total}: need 0 <= correct"):
        stats.proportion(correct, total)


def test_the_t_interval_is_the_textbook_one():
    # mean 2, sd 1, 3 values: 2 ± t(0.975, 2 df) / sqrt(3), with t = 4.303 from the tables
    found = stats.interval([1.0, 2.0, 3.0])
    assert (found.low, found.high) == pytest.approx(
        (2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), rel=1e-6
    )


def test_the_t_interval_covers_the_true_mean_in_95_of_100_sets_of_seeds():
    rng = np.random.default_rng(1)
    seed_sets = rng.normal(TRUE_ACCURACY, 0.002, size=(2000, 5))  # 5 seeds a configuration
    covered = [stats.interval(seeds.tolist()).contains(TRUE_ACCURACY) for seeds in seed_sets]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_spread_summarises_seeds_and_leaves_out_the_failed_ones():
    found = stats.spread([0.97, float("nan"), 0.98, 0.99])
    assert found.n == 3 and found.mean == pytest.approx(0.98)
    assert found.sd == pytest.approx(0.01) and (found.min, found.max) == (0.97, 0.99)
    alone = stats.spread([0.98])
    assert (alone.n, alone.mean, alone.sd, alone.low, alone.high) == (1, 0.98, None, None, None)


def test_seeds_that_do_not_vary_have_no_spread():
    found = stats.spread([0.97, 0.97, 0.97])
    assert found.sd == 0 and found.low == found.high == pytest.approx(0.97)


def test_an_interval_over_two_seeds_stays_inside_what_the_quantity_can_be():
    # the best epoch at 4 and 5: the t interval is 4.5 ± 6.4, epochs -1.9 to 10.9
    assert stats.spread([4, 5]).low == pytest.approx(-1.85, abs=0.01)
    found = stats.spread([4, 5], within=(1, 5))
    assert (found.low, found.high, found.mean) == (1, 5, 4.5)
    accuracy = stats.spread([0.999, 0.985], within=(0, 1))
    assert accuracy.high == 1 and 0 < accuracy.low < 0.985


def test_one_seed_gives_no_interval_and_says_to_ask_for_replicates():
    with pytest.raises(stats.TooFewError, match="one seed gives no interval.*replicates"):
        stats.interval([0.98])
    with pytest.raises(stats.TooFewError, match="no values"):
        stats.spread([float("nan")])


def test_welch_finds_a_big_difference_and_gives_its_direction():
    rng = np.random.default_rng(2)
    worse, better = rng.normal(0.970, 0.002, 5), rng.normal(0.980, 0.002, 5)
    found = stats.welch(worse, better)
    assert found.name == stats.WELCH and found.n == 5
    assert found.effect == pytest.approx(0.01, abs=0.003) and found.significant()
    assert stats.welch(better, worse).effect == pytest.approx(-found.effect)


def test_welch_finds_nothing_between_the_same_seeds_reordered():
    found = stats.welch([0.97, 0.98, 0.99], [0.99, 0.97, 0.98])
    assert found.effect == pytest.approx(0, abs=1e-12)
    assert found.p_value == pytest.approx(1) and not found.significant()


def test_welch_matches_the_t_distribution_by_hand():
    # means 2 and 5, variances 1 and 1, 3 each: t = 3 / sqrt(2/3), Welch's df = 4
    t = 3 / math.sqrt(2 / 3)
    by_hand = 2 * scipy_stats.t.sf(t, 4)
    assert stats.welch([1, 2, 3], [4, 5, 6]).p_value == pytest.approx(by_hand, rel=1e-9)


def test_welch_on_seeds_that_do_not_vary_decides_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's "catastrophic cancellation" on 0.98 * 3
        assert stats.welch([0.98] * 3, [0.99] * 3).p_value == 0
        assert stats.welch([0.98] * 3, [0.98] * 3).p_value == 1


def test_welch_with_one_seed_says_how_many_it_needs():
    with pytest.raises(stats.TooFewError, match="at least 2 on each side, got 1 and 3"):
        stats.welch([0.98], [0.97, 0.98, 0.99])


def test_holm_multiplies_the_smallest_p_by_the_number_of_tests_and_keeps_the_order():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> made
    # non-decreasing: 0.02, 0.03, 0.06, 0.06; given back in the order asked
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # never above 1
    assert stats.holm([]) == []


@pytest.mark.parametrize(
    "difference, sd, seeds",
    [(0.01, 0.01, 17), (-0.01, 0.01, 17), (0.005, 0.01, 64)],  # Cohen's d = 1 and d = 0.5
)
def test_seeds_needed_matches_the_power_tables(difference, sd, seeds):
    assert stats.seeds_needed(difference, sd) == seeds


def test_seeds_needed_gives_up_on_no_difference_or_one_too_small_to_see():
    assert stats.seeds_needed(0.0, 0.01) is None
    assert stats.seeds_needed(0.01, float("nan")) is None
    assert stats.seeds_needed(1e-6, 0.01) is None  # more than MAX_SEEDS


@pytest.mark.parametrize("d, seeds", [(5, 3), (6, 2), (9, 2), (50, 2)])
def test_a_huge_difference_needs_few_seeds_not_impossibly_many(d, seeds):
    assert stats.seeds_needed(d * 0.001, 0.001) == seeds  # 2 at least: Welch needs two
