"""A search space in Hydra's override grammar, as the Optuna sweeper reads it:

    'train.learning_rate=tag(log, interval(1e-4, 1e-2))'   a float, on a log scale
    'model.dropout=interval(0, 0.5)'                       a float
    'model.hidden_units=int(interval(128, 1024))'          an integer
    'model.hidden_units=range(256, 1025, 256)'             an integer, by steps
    'train.optimizer=choice(rmsprop, adam)'                one of these
    train.epochs=3                                         fixed, in every trial

Each knob's ends are checked against the schema before anything runs: an interval beyond a
knob's bounds, or a knob the config does not have, is one line naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline import config
from pipeline.config import ConfigError


@dataclass(frozen=True)
class Space:
    knobs: dict[str, BaseDistribution]  # what the search proposes, by config key
    fixed: list[str]  # overrides every trial takes as they are


def parse(overrides: list[str]) -> Space:
    """The knobs (Optuna's distributions) and the fixed overrides of `overrides`; a
    ConfigError for an empty space or a knob out of its bounds."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"the search space cannot be read: {err}") from None
    knobs: dict[str, BaseDistribution] = {}
    fixed = []
    for override, text in zip(parsed, overrides, strict=True):
        if override.is_sweep_override():
            knobs[override.key_or_group] = _distribution(override)
        else:
            fixed.append(text)
    if not knobs:
        raise ConfigError(
            "the search space is empty: give at least one knob to search, for example "
            "'model.dropout=interval(0, 0.5)' or 'train.optimizer=choice(rmsprop, adam)'"
        )
    for key, distribution in knobs.items():
        for end in _ends(distribution):
            _check(key, end, fixed)
    return Space(knobs, fixed)


def _distribution(override: Override) -> BaseDistribution:
    """Optuna's distribution of one knob."""
    key, sweep = override.key_or_group, override.value()
    if isinstance(sweep, ChoiceSweep):
        if not sweep.list:
            raise ConfigError(f"{key}=choice() offers nothing to choose: name the values")
        return CategoricalDistribution(
            [v if isinstance(v, int | float | bool) else str(v) for v in sweep.list]
        )
    if isinstance(sweep, RangeSweep) and sweep.start is not None and sweep.stop is not None:
        values: list[Any] = list(override.sweep_iterator())  # Hydra's: its stop left out
        if not values:
            raise ConfigError(
                f"{override.input_line} holds no value: its stop is not past its start"
            )
        if all(isinstance(value, int) for value in values):
            return IntDistribution(values[0], values[-1], step=int(sweep.step or 1))
        return CategoricalDistribution(values)
    if isinstance(sweep, IntervalSweep) and sweep.start is not None and sweep.end is not None:
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ConfigError(f"{key}: a search takes choice, range or interval, got {sweep}")


def _ends(distribution: BaseDistribution) -> list[Any]:
    """The values that bound a distribution: its choices, or its low and high."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    return [distribution.low, distribution.high]


def _check(key: str, value: Any, fixed: list[str]) -> None:
    """A ConfigError, naming the knob, where `key=value` is not a valid config."""
    try:
        config.compose([*fixed, f"{key}={value}"])
    except ConfigError as err:
        said = (str(err).partition(": ")[2] or str(err)).splitlines()[0]
        raise ConfigError(
            f"the search space reaches {key}={value}, which is refused: {said}"
        ) from None
