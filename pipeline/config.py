"""The configuration schema behind conf/ and params.yaml, and the one way to load it.

`conf/` is composed by Hydra into `params.yaml` (by `python -m pipeline.config` or by DVC on
`dvc exp run -S ...`). Every stage reads `params.yaml`, the file DVC hashed, through
`load()`: wrong types, unknown keys and out-of-range values stop it before any work starts.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pipeline import PipelineError, files

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
PARAMS_FILE = "params.yaml"


class ConfigError(PipelineError, ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


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
    sgd = "sgd"


class Loss(enum.Enum):
    categorical_crossentropy = "categorical_crossentropy"
    sparse_categorical_crossentropy = "sparse_categorical_crossentropy"


def _check(ok: bool, key: str, rule: str, value: Any, default: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r} (for example {key}={default})")


_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class DataConfig:
    url: str = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
    sha256: str = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    fingerprint: str = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"

    def __post_init__(self) -> None:
        for key in ("sha256", "fingerprint"):
            value = getattr(self, key)
            _check(bool(_HEX64.fullmatch(value)), f"data.{key}",
                   "64 lowercase hex digits", value, getattr(DataConfig, key))


@dataclass
class ModelConfig:
    hidden_units: int = 512
    activation: Activation = Activation.relu

    def __post_init__(self) -> None:
        _check(self.hidden_units >= 1, "model.hidden_units", ">= 1", self.hidden_units, 512)


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    optimizer: Optimizer = Optimizer.rmsprop
    learning_rate: float = 0.001
    loss: Loss = Loss.categorical_crossentropy
    validation_split: float = 0.1
    seed: int = 42
    steps_per_execution: int = 32

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", ">= 1", self.epochs, 5)
        _check(self.batch_size >= 1, "train.batch_size", ">= 1", self.batch_size, 128)
        _check(self.learning_rate > 0, "train.learning_rate", "> 0", self.learning_rate, 0.001)
        _check(0 <= self.validation_split < 1, "train.validation_split", "in [0, 1)",
               self.validation_split, 0.1)
        _check(self.seed >= 0, "train.seed", ">= 0", self.seed, 42)
        _check(self.steps_per_execution >= 1, "train.steps_per_execution", ">= 1",
               self.steps_per_execution, 32)


@dataclass
class TrackingConfig:
    experiment: str = "mnist"
    registered_model: str = "mnist-dense"

    def __post_init__(self) -> None:
        _check(bool(self.experiment.strip()), "tracking.experiment", "a non-empty name",
               self.experiment, "mnist")
        _check(bool(self.registered_model.strip()), "tracking.registered_model",
               "a non-empty name", self.registered_model, "mnist-dense")


@dataclass
class PathsConfig:
    raw: str = "data/raw/mnist.npz"
    prepared: str = "data/prepared"
    model: str = "models/model.keras"
    run: str = "models/run.json"
    history: str = "reports/history.csv"
    metrics: str = "reports/metrics.json"
    predictions: str = "reports/predictions.csv"
    plots: str = "reports/plots"

    def __post_init__(self) -> None:
        _check(self.model.endswith(".keras"), "paths.model", "a path ending in .keras",
               self.model, "models/model.keras")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def validate(raw: Any, source: str) -> Config:
    """Check a plain mapping against the schema; raise ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, got "
                          f"{type(raw).__name__} (regenerate it: python -m pipeline.config)")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigKeyError as err:
        parent = err.full_key.rpartition(".")[0]
        known = OmegaConf.structured(Config)
        for part in filter(None, parent.split(".")):
            known = known[part]
        raise ConfigError(f"{source}: unknown key {err.full_key!r}; known keys"
                          f"{' under ' + parent if parent else ''}: "
                          f"{', '.join(known.keys())}") from None
    except OmegaConfBaseException as err:
        problem = str(err.msg).splitlines()[0]
        raise ConfigError(f"{source}: {err.full_key}: {problem}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load(path: str | os.PathLike[str] = PARAMS_FILE) -> Config:
    """Load and validate params.yaml (what DVC hashed), the stages' only way in."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run from the project root, or create it "
                          "with `python -m pipeline.config`") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}); regenerate it from conf/ "
                          "with `python -m pipeline.config`") from None
    return validate(raw, str(path))


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> dict:
    """Compose conf/ with Hydra overrides into a validated plain dict, as DVC does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides))
    except HydraException as err:
        raise ConfigError(f"cannot compose {conf_dir} with {list(overrides)}: {err}") from None
    plain = OmegaConf.to_container(cfg, resolve=True)
    validate(plain, f"{conf_dir} with overrides {list(overrides)}")
    return plain  # type: ignore[return-value]


def to_dict(cfg: Config) -> dict:
    """The config as plain YAML-ready values (enums by name)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)  # type: ignore


def flatten(cfg: Config) -> dict[str, Any]:
    """`{"train.epochs": 5, ...}`: the whole resolved config as flat params."""
    def walk(prefix: str, node: Any) -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, sub in node.items()
                    for k, v in walk(f"{prefix}{key}.", sub).items()}
        return {prefix[:-1]: node}
    return walk("", to_dict(cfg))


def dump(plain: dict) -> str:
    header = "# Composed from conf/ by `python -m pipeline.config`: do not edit by hand.\n"
    return header + yaml.safe_dump(plain, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.config",
        description="Compose conf/ (with Hydra overrides) into params.yaml, or --check it.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=10")
    parser.add_argument("--output", default=PARAMS_FILE, type=Path)
    parser.add_argument("--check", action="store_true",
                        help="only validate the existing file (the check_params stage)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            load(args.output)
        else:
            files.write_text(args.output, dump(compose(args.overrides)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"{args.output} is valid" if args.check else f"wrote {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
