"""Seeds as replicates: a configuration is every param but the seed, and `replicates=N` trains
each configuration of a sweep with N seeds derived from `train.seed`.

    python -m pipeline.sweep -m replicates=3 train.epochs=5,10   # 2 configurations x 3 seeds

The seeds are `train.seed`, `train.seed + 1`, ..., so the first replicate of the default
configuration is the default run itself, and the DVC queue asks for the same ones with Hydra's
range syntax: `dvc exp run --queue -S 'train.seed=range(42,45)'`. Every run is tagged with its
configuration's digest (`names.CONFIGURATION`), whoever started it, so that replicates are
found and grouped as one configuration in MLflow and in the sweep report. The sweep adds
the seeds to its command line before Hydra sweeps it (`expand`).
"""

from __future__ import annotations

import hashlib
import json

from pipeline import config

SEED = "train.seed"
SECTIONS = ("data", "model", "train")  # what decides a training's numbers; paths do not
# Hydra's flags whose value is the next word (`python -m pipeline.sweep --help`), not an
# override: `-sc install=bash`, `-cn other`, `--cfg job`.
VALUED = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name"}
VALUED |= {"-cd", "--config-dir", "-sc", "--shell-completion", "-i", "--info"}


def seeds(base: int, replicates: int) -> list[int]:
    """The seeds of `replicates` replicates from `base`: base, base + 1, ..."""
    return list(range(base, base + replicates))


def decides(param: str) -> bool:
    """Whether a param (`train.epochs`) is part of a configuration: it decides a training's
    numbers and is not the seed. `replicates`, `reuse`, paths and tracking are not."""
    return param.partition(".")[0] in SECTIONS and param != SEED


def configuration(cfg: config.Config) -> str:
    """A short digest of every param that decides a training's numbers but the seed: the
    replicates of one configuration share it."""
    flat = {key: value for key, value in config.flatten(cfg).items() if decides(key)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def expand(argv: list[str]) -> list[str]:
    """`python -m pipeline.sweep`'s command line with `train.seed` swept over the replicates'
    seeds, when a multirun asks for more than one (`replicates=N` on the command line or in a
    grid config); a ConfigError, before any run, for a bad value or seeds given twice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    multirun = bool({"-m", "--multirun"} & set(argv))
    words = [
        arg
        for before, arg in zip(["", *argv], argv, strict=False)
        if not arg.startswith("-") and before not in VALUED
    ]
    try:
        parsed = OverridesParser.create().parse_overrides(words)
    except HydraException:
        return argv  # not ours to judge: Hydra says what is wrong with it
    plain = [  # not `search=NAME` either: it sets hydra.sweeper (conf/search/)
        str(o.input_line)
        for o in parsed
        if not o.is_sweep_override() and not o.is_hydra_override() and o.key_or_group != "search"
    ]
    composed = config.compose(plain)
    count = int(composed["replicates"])
    if count == 1:
        return argv
    if not multirun:
        raise config.ConfigError(
            f"replicates={count} asks for {count} runs: add -m (python -m pipeline.sweep -m "
            f"replicates={count} ...)"
        )
    if any(o.get_key_element() == SEED and o.is_sweep_override() for o in parsed):
        raise config.ConfigError(
            f"replicates={count} derives the seeds from one {SEED}, and {SEED} is swept "
            f"too: give one {SEED} (the first seed) or drop replicates"
        )
    base = int(composed["train"]["seed"])
    kept = [arg for arg in argv if not arg.startswith(f"{SEED}=")]
    return [*kept, f"{SEED}={','.join(map(str, seeds(base, count)))}"]
