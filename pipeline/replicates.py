"""Seeds as replicates: a configuration is every param but the seed, and `replicates=N` trains
each configuration of a sweep with N seeds derived from `train.seed`.

    python -m pipeline.sweep -m replicates=3 train.epochs=5,10   # 2 configurations x 3 seeds

The seeds are `train.seed`, `train.seed + 1`, ..., so the first replicate of the default
configuration is the default run itself, and the DVC queue asks for the same ones with Hydra's
range syntax: `dvc exp run --queue -S 'train.seed=range(42,45)'`. Every run is tagged with its
configuration's digest (`names.CONFIGURATION`), whoever started it, so that replicates are
found and grouped as one configuration in MLflow and in the sweep report. The sweep's
Hydra sweeper (`hydra_plugins/pipeline_replicates`) adds the seeds.
"""

from __future__ import annotations

import hashlib
import json

from pipeline import config

SEED = "train.seed"
SECTIONS = ("data", "model", "train")  # what decides a training's numbers; paths do not


def seeds(base: int, replicates: int) -> list[int]:
    """The seeds of `replicates` replicates from `base`: base, base + 1, ..."""
    return list(range(base, base + replicates))


def configuration(cfg: config.Config) -> str:
    """A short digest of every param that decides a training's numbers but the seed: the
    replicates of one configuration share it."""
    flat = {
        key: value
        for key, value in config.flatten(cfg).items()
        if key.partition(".")[0] in SECTIONS and key != SEED
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def check(replicates: int, swept: list[str]) -> None:
    """A ConfigError before any run opens if the seeds would be given twice."""
    if replicates > 1 and SEED in swept:
        raise config.ConfigError(
            f"replicates={replicates} derives the seeds from one {SEED}, and {SEED} is swept "
            f"too: give one {SEED} (the first seed) or drop replicates"
        )


def with_seeds(overrides: list[str], base: int, replicates: int) -> list[str]:
    """`overrides` with `train.seed` swept over the replicates' seeds (a plain `train.seed=N`,
    already `base`, gives way to the sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    kept = [str(o.input_line) for o in parsed if o.get_key_element() != SEED]
    return [*kept, f"{SEED}={','.join(map(str, seeds(base, replicates)))}"]
