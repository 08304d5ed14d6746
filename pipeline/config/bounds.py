"""What a config value may be, for the schema in `config`: the names a choice picks from, and
the bounds a value must keep, which `config.validate` checks and quotes when one is broken."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field
from typing import Any

from omegaconf import MISSING


class Activation(enum.Enum):
    relu = "relu"
    gelu = "gelu"
    elu = "elu"
    selu = "selu"
    tanh = "tanh"
    sigmoid = "sigmoid"


class Optimizer(enum.Enum):
    rmsprop = "rmsprop"
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Schedule(enum.Enum):
    """The learning rate over the epochs, after the warm-up."""

    constant = "constant"
    cosine = "cosine"  # to 0 over train.decay_epochs, then 0
    exponential = "exponential"  # times train.decay_rate every train.decay_epochs


class Monitor(enum.Enum):
    val_loss = "val_loss"
    val_accuracy = "val_accuracy"


class Loss(enum.Enum):
    categorical_crossentropy = "categorical_crossentropy"
    sparse_categorical_crossentropy = "sparse_categorical_crossentropy"


FRACTION = ("in [0, 1)", lambda value: 0 <= value < 1)  # a rule and its test, for `bounded`


@dataclass(frozen=True)
class Bound:
    """What a value must be, in words (`>= 1`) and as a test."""

    rule: str
    ok: Callable[[Any], bool]


def bounded(rule: str, ok: Callable[[Any], Any]) -> Any:
    """A field whose value comes from conf/ (no default here) and must keep `rule`."""
    return field(default=MISSING, metadata={"bound": Bound(rule, lambda value: bool(ok(value)))})


def of(item: Field) -> Bound | None:
    """The bound a schema field keeps, if it has one."""
    return item.metadata.get("bound")


def at_least(low: int) -> Any:
    """A number of at least `low`."""
    return bounded(f">= {low}", lambda value: value >= low)


def finite(low: float, above: bool = False) -> Any:
    """A number of at least `low` (above it, with `above`), neither inf nor nan: YAML reads
    `.inf` and `1e400` as infinity, Hydra `inf` and `nan`, and a learning rate of inf would
    train a model of NaN weights."""
    rule = f"a finite number {'>' if above else '>='} {low}"
    return bounded(
        rule, lambda value: math.isfinite(value) and (value > low if above else value >= low)
    )


def named() -> Any:
    """A name that is not blank."""
    return bounded("a non-empty name", str.strip)


def hex64() -> Any:
    """A sha256 digest as conf/ writes it."""
    return bounded("64 lowercase hex digits", re.compile(r"[0-9a-f]{64}").fullmatch)
