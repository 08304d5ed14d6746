"""pipeline/search: the space in Hydra's grammar, successive halving's rungs and promotions,
and seed racing, on synthetic objectives whose answers are known."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.config import ConfigError
from pipeline.search import driver, halving, racing, space


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


def test_a_trial_goes_on_when_among_the_top_third_of_its_rung_so_far():
    reached = {0: 0.91}
    assert halving.goes_on(reached, 0)  # the first always goes on
    reached |= {1: 0.97, 2: 0.93}
    assert halving.goes_on(reached, 1)  # floor(3 / 3) = 1: the best
    assert not halving.goes_on(reached, 2)
    reached |= {3: 0.95, 4: 0.90, 5: 0.96}
    assert halving.goes_on(reached, 5)  # floor(6 / 3) = 2: 1 and 5
    assert not halving.goes_on(reached, 3)
    assert not halving.goes_on({0: 0.9, 1: 0.9, 2: 0.9}, 2)  # ties: the first to reach it


def test_asha_on_a_known_objective_takes_the_best_trials_to_the_top_rung():
    """Trials of known quality, each rung's accuracy that quality plus a little noise: about
    a third of each rung goes on, and the truly best trials reach the top."""
    rng = np.random.default_rng(0)
    quality = [float(q) for q in rng.uniform(0.90, 0.99, 27)]
    reached: list[dict[int, float]] = [{}, {}, {}]
    for trial, truth in enumerate(quality):
        for rung in range(3):
            reached[rung][trial] = truth + float(rng.normal(0, 0.001)) * (rung + 1)
            if rung == 2 or not halving.goes_on(reached[rung], trial):
                break
    assert len(reached[0]) == 27
    assert len(reached[1]) <= 27 / 3  # a late trial must beat a third of those before it
    assert len(reached[2]) < len(reached[1])
    best = sorted(range(27), key=quality.__getitem__, reverse=True)[:3]
    assert set(best) <= set(reached[2])


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


class Objective:
    """A known answer: validation accuracy peaks at dropout 0.3, rises with epochs, and each
    seed adds noise of sd 0.1 points; `jobs` counts the jobs asked, `epochs` what they cost."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, str]] = []

    def __call__(self, overrides: list[str]) -> tuple[float | None, str | None]:
        given = dict(line.split("=", 1) for line in overrides)
        self.jobs.append(given)
        dropout = float(given.get("model.dropout", 0))
        epochs = int(given.get("train.epochs", 5))
        noise = np.random.default_rng([int(given["train.seed"]), epochs]).normal(0, 0.001)
        value = 0.985 - 0.1 * (dropout - 0.3) ** 2 - 0.01 / epochs + noise
        return value, f"run-{len(self.jobs)}"


def _search(objective, trials=12, **settings):
    found = space.parse(["model.dropout=interval(0, 0.9)"])
    settings = driver.Settings(trials=trials, max_epochs=9, **settings)
    return driver.Search(found, settings, objective, seed=42)()


def test_the_search_finds_the_known_best_for_a_fraction_of_the_grids_epochs():
    objective = Objective()
    outcome = _search(objective, trials=20)
    best = outcome.winner()
    assert best is not None
    assert abs(best.params["model.dropout"] - 0.3) < 0.15, best.params
    assert len(best.seeds) == 5 and sorted(outcome.baseline) == [42, 43, 44, 45, 46]
    assert {"train.epochs"} & set(objective.jobs[-1]) == set(), "the baseline's epochs are conf/'s"
    pruned = [t for t in outcome.trials if t.state == "PRUNED"]
    assert len(pruned) >= len(outcome.trials) / 2, "halving let most trials go on"
    # the checkpoint cache: a job goes on from the same configuration and seed's longest
    chains: dict[tuple, int] = {}
    for job in objective.jobs:
        chain = tuple(sorted((k, v) for k, v in job.items() if k != "train.epochs"))
        chains[chain] = max(chains.get(chain, 0), int(job.get("train.epochs", 5)))
    climbed = sum(
        e
        for chain, e in chains.items()
        if chain[0][0] == "model.dropout" and ("train.seed", "42") in chain
    )
    assert climbed <= 20 * 9 / 2, "the rungs cost half or more of every trial's 9 epochs"


def test_the_same_search_proposes_the_same_trials_and_more_budget_goes_on_from_them():
    first, again, more = Objective(), Objective(), Objective()
    done = _search(first, trials=6)
    assert [t.params for t in _search(again, trials=6).trials] == [t.params for t in done.trials]
    assert first.jobs == again.jobs, "a replay must ask the same jobs: each is reused"
    longer = _search(more, trials=9)
    assert [t.params for t in longer.trials[:6]] == [t.params for t in done.trials]


def test_noise_alone_crowns_no_challenger_and_ties_it():
    """Every dropout is as good as another (the objective's noise alone): the contenders race
    to a tie, and the best set names them."""
    outcome = _search(_flat, trials=9)
    assert outcome.best is not None
    assert all(race["outcome"] != "better" for race in outcome.races)
    assert len(outcome.tied) == len([t for t in outcome.trials if len(t.seeds) >= 2]) - 1


def _flat(overrides: list[str]) -> tuple[float, str]:
    given = dict(line.split("=", 1) for line in overrides)
    seed, epochs = int(given["train.seed"]), int(given.get("train.epochs", 5))
    return 0.98 + float(np.random.default_rng([seed, epochs]).normal(0, 0.0016)), "run"


@pytest.mark.parametrize(
    ("sweeper", "overrides", "said"),
    [
        (
            {"trials": 0},
            ["model.dropout=interval(0, 0.5)"],
            "hydra.sweeper.trials=0 leaves no search",
        ),
        (
            {"seeds": 1},
            ["model.dropout=interval(0, 0.5)"],
            "hydra.sweeper.seeds=1 leaves no search",
        ),
        ({"trails": 3}, ["model.dropout=interval(0, 0.5)"], "hydra.sweeper has no trails"),
        ({}, ["train.epochs=3"], "the search space is empty"),
        (
            {},
            ["train.epochs=3", "model.dropout=interval(0, 0.5)"],
            "train.epochs is the search's own",
        ),
        ({}, ["train.optimizer=choice(adam, nadam)"], "train.optimizer=nadam, which is refused"),
        ({}, ["train.schedule=choice(cosine, step)"], "train.schedule=step, which is refused"),
    ],
)
def test_a_search_that_cannot_be_is_one_line(sweeper, overrides, said):
    with pytest.raises(ConfigError, match=said) as caught:
        driver.plan(sweeper, overrides, seed=42)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (
            ["hydra.sweeper.trials=0", "model.dropout=interval(0, 0.5)"],
            "trials=0 leaves no search",
        ),
        (["model.dropout=interval(0, 1)"], "reaches model.dropout=1.0, which is refused"),
        (["train.optimizer=choice(adam, nadam)"], "train.optimizer=nadam, which is refused"),
    ],
)
def test_the_search_command_says_what_cannot_be_searched_in_one_line_and_opens_no_run(
    tmp_path, words, said
):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.search", *words, f"hydra.sweep.dir={tmp_path / 's'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output[-2000:]
    (line,) = [line for line in output.splitlines() if "error:" in line]
    assert said in line
    assert not (tmp_path / "mlflow.db").exists(), "a run was opened for a search that cannot be"
