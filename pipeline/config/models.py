"""Each model family's config: one dataclass a family, its fields with their bounds.

`model.family` picks the family (`model=convnet` picks `conf/model/convnet.yaml`, which sets
it); `config.validate` checks `model` against that family's dataclass, and
`pipeline.training.families` builds the network from it. docs/pipeline.md says how to add one.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.common.mnist import SIDE
from pipeline.config import bounds
from pipeline.config.bounds import Activation


@dataclass
class ModelConfig:
    """What every family's config holds: its name."""

    family: str = MISSING


@dataclass
class DenseConfig(ModelConfig):
    """The notebook's network: Dense(hidden_units, activation) -> Dense(10, softmax), with
    dropout on the input and the hidden layer where set."""

    hidden_units: int = bounds.at_least(1)
    activation: Activation = MISSING
    input_dropout: float = bounds.bounded(*bounds.FRACTION)
    dropout: float = bounds.bounded(*bounds.FRACTION)


@dataclass
class ConvnetConfig(ModelConfig):
    """Chollet's small convnet: for each of `filters`, Conv2D(kernel_size) then max-pooling;
    then Dense(10, softmax)."""

    filters: list[int] = bounds.bounded(
        "a list of 1 to 4 numbers >= 1", lambda value: 1 <= len(value) <= 4 and min(value) >= 1
    )
    kernel_size: int = bounds.at_least(1)
    pool_size: int = bounds.at_least(1)
    activation: Activation = MISSING
    dropout: float = bounds.bounded(*bounds.FRACTION)

    def sides(self) -> list[int]:
        """The side of the digit's picture after each convolution and its pooling."""
        side, found = SIDE, []
        for _ in self.filters:
            side = (side - self.kernel_size + 1) // self.pool_size
            found.append(side)
        return found


FAMILIES: dict[str, type[ModelConfig]] = {"dense": DenseConfig, "convnet": ConvnetConfig}


def problem(cfg: ModelConfig) -> str | None:
    """What no single value of a family's config decides, in words; None where all is well."""
    if isinstance(cfg, ConvnetConfig) and min(cfg.sides()) < 1:
        return (
            f"model.filters={cfg.filters} with model.kernel_size={cfg.kernel_size} and "
            f"model.pool_size={cfg.pool_size} shrink the {SIDE}x{SIDE} digit to nothing "
            f"(sides {cfg.sides()}): use fewer filters, a smaller kernel_size or pool_size"
        )
    return None
