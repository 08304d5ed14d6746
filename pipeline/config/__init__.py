"""The configuration schema behind conf/ and params.yaml, and the one way to load it.

`conf/` is composed by Hydra into `params.yaml` (by `python -m pipeline.config`, the command
line in its `__main__`, or by DVC on `dvc exp run -S ...`). Every stage reads
`params.yaml`, the file DVC hashed, through `load()`: wrong types, unknown keys and
out-of-range values stop it before any work starts. The choices and bounds the schema allows
are spelled in `pipeline.config.bounds`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from pipeline import PipelineError
from pipeline.config import bounds, models, training

# The schema's parts, where its users find them (`config.TrainConfig`, `config.Loss`).
from pipeline.config.bounds import Loss as Loss
from pipeline.config.bounds import Monitor as Monitor
from pipeline.config.bounds import Optimizer as Optimizer
from pipeline.config.bounds import Schedule as Schedule
from pipeline.config.models import FAMILIES, ModelConfig
from pipeline.config.training import EarlyStoppingConfig as EarlyStoppingConfig
from pipeline.config.training import TrainConfig

log = logging.getLogger(__name__)


def _conf_dir() -> Path:
    """conf/ beside the package in a checkout (and DVC's queue copies of it); with the package
    installed from a wheel, the project's, in the working directory."""
    beside = Path(__file__).resolve().parents[2] / "conf"
    return beside if beside.is_dir() else Path.cwd() / "conf"


CONF_DIR = _conf_dir()
PARAMS_FILE = "params.yaml"


class ConfigError(PipelineError, ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


# The schema: types and bounds. The values live in conf/ alone (MISSING here).


@dataclass
class DataConfig:
    url: str = MISSING
    sha256: str = bounds.hex64()
    fingerprint: str = bounds.hex64()


@dataclass
class TrackingConfig:
    experiment: str = bounds.named()
    registered_model: str = bounds.named()
    promotion_level: float = bounds.bounded("in (0, 1)", lambda value: 0 < value < 1)


@dataclass
class PathsConfig:
    raw: str = MISSING
    prepared: str = MISSING
    model: str = bounds.bounded("a path ending in .keras", lambda value: value.endswith(".keras"))
    history: str = MISSING
    environment: str = MISSING
    metrics: str = MISSING
    predictions: str = MISSING
    plots: str = MISSING


@dataclass
class CheckpointsConfig:
    enabled: bool = MISSING
    dir: str = bounds.named()
    max_size_mb: int = bounds.at_least(1)


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: PathsConfig = MISSING
    checkpoints: CheckpointsConfig = MISSING
    replicates: int = bounds.at_least(1)
    reuse: bool = MISSING


def _check_bounds(node: Any, prefix: str = "", family: str | None = None) -> None:
    """Every bounded field of a config, section by section; a ConfigError for the first value
    out of bounds, with an example from conf/'s own default."""
    for item in dataclasses.fields(node):
        value, key = getattr(node, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            _check_bounds(value, f"{key}.", family)
        elif (bound := bounds.of(item)) is not None and not bound.ok(value):
            raise ConfigError(f"{key} must be {bound.rule}, got {value!r}{_example(key, family)}")


def _check_rules(cfg: Config) -> None:
    """What no single value decides."""
    for problem in (models.problem(cfg.model), training.problem(cfg.train)):
        if problem is not None:
            raise ConfigError(problem)
    if cfg.train.early_stopping.enabled and cfg.train.validation_split == 0:
        raise ConfigError(
            "train.early_stopping.enabled=true monitors validation, but "
            "train.validation_split=0 holds no digits back: set train.validation_split "
            f"(for example train.validation_split={_conf_value('train.validation_split')}), or "
            "train.early_stopping.enabled=false"
        )


def _conf_value(key: str, family: str | None = None) -> Any:
    """conf/'s own value of `key` (`train.seed`), without overrides but the model `family`'s."""
    node: Any = _hydra_compose((f"model={family}",) if family and key.startswith("model.") else ())
    for part in key.split("."):
        node = node[part]
    return node


def _example(key: str, family: str | None = None) -> str:
    """` (for example train.seed=42)`, conf/'s own value, for a key that holds one value."""
    try:
        value = _conf_value(key, family)
    except (KeyError, TypeError, ConfigError):  # not a key of conf/
        return ""
    return "" if isinstance(value, dict) else f" (for example {key}={value})"


def _known(section: str, family: str) -> list[str]:
    """The keys a section (`train`, or `` for the top) may hold."""
    schema: Any = Config
    for part in filter(None, section.split(".")):
        schema = FAMILIES[family] if part == "model" else typing.get_type_hints(schema)[part]
    return [item.name for item in dataclasses.fields(schema)]


def _family(raw: dict) -> str:
    """The model family `raw` names (`model.family`), one of FAMILIES."""
    model = raw.get("model")
    family = model.get("family", MISSING) if isinstance(model, dict) else MISSING
    if family not in FAMILIES:
        got = "none is given" if family == MISSING else f"got {family!r}"
        raise ConfigError(
            f"model.family must be one of {', '.join(FAMILIES)}, {got} (pick one with "
            f"{' or '.join(f'model={name}' for name in FAMILIES)}: conf/model/<family>.yaml)"
        )
    return str(family)


def validate(raw: Any, source: str, fix: str = "") -> Config:
    """Check a plain mapping against the schema; raise ConfigError naming the bad key, and
    ending with `fix` where a value is wrong (what to do about the file it came from)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of config sections, got "
            f"{type(raw).__name__} (regenerate it: python -m pipeline.config)"
        )
    family = "dense"
    try:
        family = _family(raw)
        schema = Config(model=FAMILIES[family]())  # type: ignore[call-arg]
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
        _check_bounds(cfg, family=family)
        _check_rules(cfg)
    except ConfigKeyError as err:
        key = str(err.full_key)
        parent = key.rpartition(".")[0]
        raise ConfigError(
            f"{source}: unknown key {key!r}; known keys"
            f"{' under ' + parent if parent else ''}: "
            f"{', '.join(_known(parent, family))}{fix}"
        ) from None
    except MissingMandatoryValue as err:
        key = str(err.full_key)
        raise ConfigError(
            f"{source}: {key} is missing (for example {key}={_conf_value(key)}); "
            "regenerate the file from conf/ with `python -m pipeline.config`"
        ) from None
    except OmegaConfBaseException as err:
        problem = str(err.msg).splitlines()[0]
        key = str(err.full_key)
        raise ConfigError(f"{source}: {key}: {problem}{_example(key)}{fix}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}{fix}") from None
    return cfg


def load(path: str | os.PathLike[str] = PARAMS_FILE) -> Config:
    """Load and validate params.yaml (what DVC hashed), the stages' only way in."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: run from the project root, or create it "
            "with `python -m pipeline.config`"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{path} is not valid YAML ({err}); regenerate it from conf/ "
            "with `python -m pipeline.config`"
        ) from None
    # DVC writes params.yaml before any stage checks it: a failed `dvc exp run -S` leaves it.
    fix = (
        f"; {path} holds it (a hand edit, or a failed dvc exp run -S): "
        "recompose it from conf/ with `python -m pipeline.config`"
    )
    return validate(raw, str(path), fix)


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> dict:
    """Compose conf/ with Hydra overrides into a validated plain dict, as DVC does."""
    plain = _hydra_compose(tuple(overrides), conf_dir)
    validate(plain, f"{conf_dir} with overrides {list(overrides)}")
    return copy.deepcopy(plain)


def from_conf() -> Config:
    """conf/ as it is, without overrides: the values the YAML holds."""
    return validate(_hydra_compose(()), str(CONF_DIR))


@functools.lru_cache(maxsize=8)
def _hydra_compose(overrides: tuple[str, ...], conf_dir: Path = CONF_DIR) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: the sweep's job
            cfg = hydra_compose("config", overrides=list(overrides))
        else:
            with initialize_config_dir(str(conf_dir), version_base="1.3"):
                cfg = hydra_compose("config", overrides=list(overrides))
    except (HydraException, ValueError) as err:  # ValueError: `train=5` (a group's option)
        raise ConfigError(f"cannot compose {conf_dir} with {list(overrides)}: {err}") from None
    plain: dict = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    plain.pop("hydra", None)
    return plain


def to_dict(cfg: Config) -> dict:
    """The config as plain YAML-ready values (enums by name)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)  # type: ignore


def flatten(cfg: Config) -> dict[str, Any]:
    """`{"train.epochs": 5, ...}`: the whole resolved config as flat params."""

    def walk(prefix: str, node: Any) -> dict[str, Any]:
        if isinstance(node, dict):
            return {
                k: v for key, sub in node.items() for k, v in walk(f"{prefix}{key}.", sub).items()
            }
        return {prefix[:-1]: node}

    return walk("", to_dict(cfg))


def dump(plain: dict) -> str:
    header = "# Composed from conf/ by `python -m pipeline.config`: do not edit by hand.\n"
    return header + yaml.safe_dump(plain, sort_keys=False)
