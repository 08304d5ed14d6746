"""The search's loop, on any objective: Optuna's TPE proposes (ask/tell, seeded), each trial
climbs the rungs of successive halving while it stays in the top 1/eta (`halving`), the
best of the top rung race on seeds (`racing`), and the winner and the default (conf/ as it
is: the baseline) each get the most seeds, for the report's test.

A job is `run(overrides)`: its validation accuracy (None where it failed) and its run id.
In a sweep that is a Hydra job (`hydra_plugins/pipeline_search`), whose key makes a job done
before free: the same command replays the same proposals (TPE is seeded, the values are the
same to the bit) over reused jobs, and goes on where it stopped."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from pipeline.analysis import stats
from pipeline.common import files
from pipeline.config import ConfigError, replicates
from pipeline.search import OUTCOME, OWN, halving, racing, space
from pipeline.search.space import Space

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line for each study made

Run = Callable[[list[str]], tuple[float | None, str | None]]


@dataclass(frozen=True)
class Settings:
    """The search's budget and rules (`hydra.sweeper.*`, conf/hydra/sweeper/search.yaml)."""

    trials: int = 20  # configurations proposed, at most
    minutes: float | None = None  # no new trial after this long (replayed jobs count little)
    min_epochs: int = 1
    max_epochs: int = 9
    eta: int = 3
    contenders: int = 3  # the top rung's best that race on seeds
    seeds: int = 5  # the most seeds a race, the winner and the baseline get
    level: float = stats.ALPHA
    sampler_seed: int = 0  # TPE's: the same command proposes the same trials

    def check(self) -> list[int]:
        """The rungs; a ConfigError naming the setting that cannot be."""
        wrong = [
            ("trials", self.trials, self.trials >= 1, "at least 1"),
            ("minutes", self.minutes, self.minutes is None or self.minutes > 0, "above 0"),
            ("contenders", self.contenders, self.contenders >= 1, "at least 1"),
            ("seeds", self.seeds, self.seeds >= 2, "at least 2: a test needs them"),
            ("level", self.level, 0 < self.level < 1, "in (0, 1)"),
        ]
        for name, value, fine, should in wrong:
            if not fine:
                raise ConfigError(
                    f"hydra.sweeper.{name}={value} leaves no search: it should be {should}"
                )
        return halving.rungs(self.min_epochs, self.max_epochs, self.eta)


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    reached: dict[int, float] = field(default_factory=dict)  # epochs -> val accuracy
    seeds: dict[int, float] = field(default_factory=dict)  # at the top rung: seed -> val acc
    runs: dict[str, str] = field(default_factory=dict)  # "epochs/seed" -> run id
    state: str = "RUNNING"

    def values(self) -> list[float]:
        return [self.seeds[seed] for seed in sorted(self.seeds)]

    def seeded_runs(self, epochs: int) -> list[str]:
        """Its runs at the top rung (`epochs`), one per seed raced, in the seeds' order."""
        return [self.runs[f"{epochs}/{seed}"] for seed in sorted(self.seeds)]


@dataclass
class Outcome:
    """What a search did (`search.json`): every trial, each race, the best set, the runs
    the report compares on the test digits."""

    rungs: list[int]
    knobs: dict[str, str]  # the space: Optuna's distributions as JSON
    level: float
    trials: list[Trial] = field(default_factory=list)
    races: list[dict[str, Any]] = field(default_factory=list)
    best: int | None = None  # the winning trial
    tied: list[int] = field(default_factory=list)  # trials the seeds cannot tell from it
    baseline: dict[int, str] = field(default_factory=dict)  # seed -> run id

    def winner(self) -> Trial | None:
        return next((t for t in self.trials if t.number == self.best), None)

    def write(self, folder: Path) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=2, default=str)
        files.write_text(folder / OUTCOME, text + "\n")

    @classmethod
    def read(cls, folder: Path) -> Outcome:
        plain = json.loads((folder / OUTCOME).read_text())
        trials = [
            Trial(**(t | {"reached": _ints(t["reached"]), "seeds": _ints(t["seeds"])}))
            for t in plain.pop("trials")
        ]
        return cls(**plain | {"trials": trials, "baseline": _ints(plain["baseline"])})


def _ints(mapping: dict[str, Any]) -> dict[int, Any]:
    return {int(key): value for key, value in mapping.items()}


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def _text(value: Any) -> str:
    """A value as Hydra's override grammar reads it back: true/false, floats to the bit."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


class Search:
    def __init__(self, space: Space, settings: Settings, run: Run, seed: int) -> None:
        self.space, self.settings, self.run, self.seed = space, settings, run, seed
        knobs = {k: optuna.distributions.distribution_to_json(d) for k, d in space.knobs.items()}
        self.outcome = Outcome(settings.check(), knobs, settings.level)

    def job(self, trial: Trial | None, epochs: int | None, seed: int) -> float | None:
        """Train one job: a trial's at `epochs`, or (None) the default's: conf/ as it is,
        but for the fixed overrides that decide no number (`tracking.experiment`)."""
        fixed = [o for o in self.space.fixed if trial or not replicates.decides(_key(o))]
        params = trial.params if trial else {}
        overrides = [*fixed, *(f"{k}={_text(v)}" for k, v in params.items())]
        overrides += [f"train.epochs={epochs}"] if epochs else []
        value, run_id = self.run([*overrides, f"train.seed={seed}"])
        if trial is None:
            self.outcome.baseline[seed] = run_id or ""
        elif run_id:
            trial.runs[f"{epochs}/{seed}"] = run_id
        return value

    def propose(self) -> None:
        """Ask, climb the rungs while the trial stays in the top 1/eta, tell."""
        settings, rungs = self.settings, self.outcome.rungs
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.sampler_seed)
        )
        reached: list[dict[int, float]] = [{} for _ in rungs]
        started = time.monotonic()
        for number in range(settings.trials):
            if settings.minutes and time.monotonic() - started > settings.minutes * 60:
                log.info("search: %s minutes are up after %d trials", settings.minutes, number)
                break
            asked = study.ask(self.space.knobs)
            trial = Trial(number, dict(asked.params))
            self.outcome.trials.append(trial)
            for rung, epochs in enumerate(rungs):
                value = self.job(trial, epochs, self.seed)
                if value is None:
                    trial.state = TrialState.FAIL.name
                    break
                asked.report(value, epochs)
                trial.reached[epochs] = reached[rung][number] = value
                if rung == len(rungs) - 1:
                    trial.state, trial.seeds[self.seed] = TrialState.COMPLETE.name, value
                elif not halving.goes_on(reached[rung], number, settings.eta):
                    trial.state = TrialState.PRUNED.name
                    break
            done = trial.state == TrialState.COMPLETE.name
            study.tell(asked, value if done else None, state=TrialState[trial.state])
            log.info("search: trial %d %s %s", number, trial.state, trial.reached)

    def more_seeds(self, trial: Trial, count: int) -> bool:
        """Train `trial` at the top rung up to `count` seeds; False where a job failed."""
        while len(trial.seeds) < count:
            seed = self.seed + len(trial.seeds)
            value = self.job(trial, self.outcome.rungs[-1], seed)
            if value is None:
                return False
            trial.seeds[seed] = value
        return True

    def race(self) -> None:
        """Race the top rung's best on seeds, one challenger at a time; the best set is the
        winner and those Welch over their seeds (Holm) cannot tell from it."""
        settings = self.settings
        top = [t for t in self.outcome.trials if t.state == TrialState.COMPLETE.name]
        top = sorted(top, key=lambda t: -t.reached[self.outcome.rungs[-1]])[: settings.contenders]
        if not top:
            return
        incumbent = top[0]
        for challenger in top[1:]:
            while (
                found := racing.race(
                    incumbent.values(), challenger.values(), settings.level, settings.seeds
                )
            ).outcome is racing.Outcome.more:
                short = racing.side_short(incumbent.values(), challenger.values())
                side = incumbent if short == "incumbent" else challenger
                if not self.more_seeds(side, len(side.seeds) + 1):
                    break
            self.outcome.races.append(
                {
                    "incumbent": incumbent.number,
                    "challenger": challenger.number,
                    "outcome": found.outcome.value,
                    "seeds": [len(incumbent.seeds), len(challenger.seeds)],
                    "p_value": found.test.p_value if found.test else None,
                }
            )
            if found.outcome is racing.Outcome.better:
                incumbent = challenger
        if not self.more_seeds(incumbent, settings.seeds):
            raise ConfigError(f"the search's winner, trial {incumbent.number}, failed on a seed")
        self.outcome.best = incumbent.number
        others = [t for t in top if t is not incumbent and len(t.seeds) >= 2]
        tests = [stats.welch(t.values(), incumbent.values()) for t in others]
        adjusted = stats.holm([test.p_value for test in tests])
        self.outcome.tied = [
            t.number for t, p in zip(others, adjusted, strict=True) if p >= settings.level
        ]

    def __call__(self, folder: Path | None = None) -> Outcome:
        """The whole search; its outcome, written to `folder` as each phase ends."""
        for phase in (self.propose, self.race, self.baseline):
            phase()
            if folder:
                self.outcome.write(folder)
        return self.outcome

    def baseline(self) -> None:
        """The baseline's seeds, as many as the winner's: the report's test needs both."""
        if self.outcome.best is None:
            return
        for seed in range(self.seed, self.seed + self.settings.seeds):
            self.job(None, None, seed)


def read(lines: list[str], seed: int) -> tuple[Space, int]:
    """The space of a search's command line and the seed its trials train with (`train.seed`
    there, or conf/'s); a ConfigError where it sets what the search sets itself."""
    found = space.parse(lines)
    fixed = {_key(line): line for line in found.fixed}
    for own in OWN:
        if own in found.knobs or (own == "train.epochs" and own in fixed):
            raise ConfigError(
                f"{own} is the search's own: its rungs run from hydra.sweeper.min_epochs to "
                "max_epochs, its seeds from train.seed up; leave it out of the space"
            )
    if OWN[1] in fixed:
        seed = int(fixed[OWN[1]].partition("=")[2])
    rest = [line for key, line in fixed.items() if key != OWN[1]]
    return Space(found.knobs, rest), seed


def plan(sweeper: dict[str, Any], arguments: list[str], seed: int) -> tuple[Space, Settings, int]:
    """The search that `hydra.sweeper` (its settings and `params`) and the command line's
    overrides ask for, checked: a ConfigError, one line, for what cannot be searched."""
    sweeper = {key: value for key, value in sweeper.items() if key != "_target_"}
    params = sweeper.pop("params", None) or {}
    known = {f.name for f in dataclasses.fields(Settings)}
    if unknown := sorted(set(sweeper) - known):
        raise ConfigError(f"hydra.sweeper has no {', '.join(unknown)}: it has {sorted(known)}")
    settings = Settings(**sweeper)
    settings.check()
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += [line for line in arguments if _key(line) != "search"]  # in hydra.sweeper now
    found, seed = read(lines, seed)
    return found, settings, seed
