"""pipeline/search: the space in Hydra's grammar, successive halving's rungs and promotions,
and seed racing, on synthetic objectives whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.config import ConfigError
from pipeline.search import halving, racing, space


def test_the_space_reads_hydras_grammar_as_the_optuna_sweeper_does():
    read = space.parse(
        [
            "train.learning_rate=tag(log, interval(1e-4, 1e-2))",
            "model.dropout=interval(0, 0.5)",
            "model.hidden_units=int(interval(128, 1024))",
            "train.batch_size=range(64, 257, 64)",
            "train.optimizer=choice(rmsprop, adam)",
            "train.epochs=3",
        ]
    )
    assert read.knobs == {
        "train.learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "model.dropout": FloatDistribution(0.0, 0.5),
        "model.hidden_units": IntDistribution(128, 1024),
        "train.batch_size": IntDistribution(64, 256, step=64),
        "train.optimizer": CategoricalDistribution(["rmsprop", "adam"]),
    }
    assert read.fixed == ["train.epochs=3"]


@pytest.mark.parametrize(
    "overrides, said",
    [
        (["train.epochs=3"], "the search space is empty: give at least one knob"),
        (
            ["model.dropout=interval(0, 1.5)"],
            "the search space reaches model.dropout=1.5, which is refused: "
            "model.dropout must be in [0, 1), got 1.5",
        ),
        (["train.optimizer=choice(rmsprop, adagrad)"], "reaches train.optimizer=adagrad"),
        (["train.schedule=choice(constant, linear)"], "reaches train.schedule=linear"),
        (["model.width=interval(1, 2)"], "reaches model.width=1"),
        (["train.epochs=range(5, 5)"], "train.epochs=range(5, 5) holds no value"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_knob(overrides, said):
    with pytest.raises(ConfigError) as caught:
        space.parse(overrides)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_rungs_grow_by_eta_up_to_the_most_epochs():
    assert halving.rungs(1, 9) == [1, 3, 9]
    assert halving.rungs(1, 10) == [1, 3, 9]
    assert halving.rungs(2, 20, eta=2) == [2, 4, 8, 16]
    with pytest.raises(ConfigError, match="min_epochs <= max_epochs"):
        halving.rungs(3, 2)


def test_a_rung_promotes_its_top_third_best_first_once_each():
    finished = {f"t{i}": accuracy for i, accuracy in enumerate([0.91, 0.97, 0.93, 0.95, 0.90])}
    assert halving.promotable(finished, set()) == ["t1"]  # floor(5 / 3) = 1
    assert halving.promotable(finished, {"t1"}) == []
    finished |= {"t5": 0.96}
    assert halving.promotable(finished, {"t1"}) == ["t5"]  # floor(6 / 3) = 2: t1, t5


def test_asha_on_a_known_objective_takes_the_best_trials_to_the_top_rung():
    """Trials of known quality, each rung's accuracy that quality plus a little noise: ASHA
    sends a third of each rung on, and the truly best trials reach the top."""
    rng = np.random.default_rng(0)
    quality = {f"t{i}": float(q) for i, q in enumerate(rng.uniform(0.90, 0.99, 27))}
    finished: list[dict[str, float]] = [{}, {}, {}]
    promoted: list[set[str]] = [set(), set(), set()]
    fresh = iter(quality)
    for _ in range(200):
        step = halving.next_step(finished, promoted)
        if step is None:
            trial, rung = next(fresh, None), 0
            if trial is None:
                break
        else:
            trial, rung = step
            promoted[rung - 1].add(trial)
        finished[rung][trial] = quality[trial] + float(rng.normal(0, 0.001)) * (rung + 1)
    assert len(finished[0]) == 27
    for rung in (0, 1):  # each rung's top third went on, and not many more (ASHA promotes
        # as a rung fills, before later trials overtake)
        top = sorted(finished[rung], key=finished[rung].get, reverse=True)
        assert set(top[: len(top) // 3]) <= set(finished[rung + 1])
        assert len(finished[rung + 1]) <= 1.25 * len(top) / 3
    best = sorted(quality, key=quality.get, reverse=True)[:3]
    assert set(best) <= set(finished[2])


def _race(
    rng, incumbent_mean: float, challenger_mean: float, sd: float = 0.0016
) -> racing.Outcome:
    sides: dict[str, list[float]] = {"incumbent": [], "challenger": []}
    means = {"incumbent": incumbent_mean, "challenger": challenger_mean}
    while True:
        result = racing.race(sides["incumbent"], sides["challenger"])
        if result.outcome is not racing.Outcome.more:
            return result.outcome
        side = racing.side_short(sides["incumbent"], sides["challenger"])
        sides[side].append(float(rng.normal(means[side], sd)))


def test_a_challenger_better_only_by_noise_is_rarely_crowned_a_truly_better_one_is():
    """sd 0.16 points: ten seeds of the default config. Equal means: crowned at most as often
    as the level says, though the race looks at every seed; 0.8 points better (five sd):
    crowned nearly always."""
    rng = np.random.default_rng(1)
    noise = [_race(rng, 0.979, 0.979) for _ in range(400)]
    assert noise.count(racing.Outcome.better) / len(noise) <= 0.05
    assert noise.count(racing.Outcome.tied) / len(noise) >= 0.85
    better = [_race(rng, 0.979, 0.987) for _ in range(100)]
    assert better.count(racing.Outcome.better) >= 95
    worse = [_race(rng, 0.987, 0.979) for _ in range(100)]
    assert worse.count(racing.Outcome.worse) >= 95
