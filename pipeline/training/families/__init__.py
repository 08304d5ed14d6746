"""Model families: a builder per `model.family`, with what the memory check needs to know.

A family is a module here (its `build`, `parameters`, `per_digit`, `SMALLER`), its typed
config in `pipeline.config.models` and its defaults in `conf/model/<family>.yaml`: the
notebook's `dense`, Chollet's small `convnet`. docs/pipeline.md says how to add a third.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from pipeline.training.families import convnet, dense


@dataclass(frozen=True)
class Family:
    """What the pipeline asks of a family: its network, uncompiled, for the prepared digits'
    shape; its parameters and the floats a digit of a batch holds in training (the memory
    check); and what to change where it is too large to train."""

    build: Callable[[Any, tuple[int, ...]], keras.Model]
    parameters: Callable[[Any], int]
    per_digit: Callable[[Any], int]
    smaller: str


FAMILIES = {
    module.__name__.rpartition(".")[2]: Family(
        module.build, module.parameters, module.per_digit, module.SMALLER
    )
    for module in (dense, convnet)
}
