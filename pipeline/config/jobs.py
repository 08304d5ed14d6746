"""A job's key: everything that decides what training and evaluating one configuration makes,
so that a job done once is never done again.

The key covers the data (its fingerprint), every param of `data`, `model` and `train` (the
seed, epochs and early stopping included), the code a job runs (`pipeline.train` and
`pipeline.evaluate` with all they import, so uncommitted changes count) and the environment
facts that change the numbers (`provenance.environment`). Where the tracking store has a
FINISHED run of the same key with its whole record, a sweep counts that run instead of
training again (`pipeline.sweep`, `tracking.reuse`); a run without the key, or ended FAILED or
KILLED, is never reused. Paths, the tracking and checkpoint settings and `reuse` itself are
not in it: they do not change a job's numbers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from pipeline import config, preprocess
from pipeline.common import provenance, sources
from pipeline.config import replicates

FORMAT = 1  # of the key; a new format reuses nothing made before it
CODE = ("pipeline.train", "pipeline.evaluate")  # what a job runs


def key(cfg: config.Config, fingerprint: str, environment: Mapping[str, str]) -> str:
    """The job key (sha256) of `cfg` trained on data of `fingerprint` in `environment`."""
    plain = config.to_dict(cfg)
    content = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        **{section: plain[section] for section in replicates.SECTIONS},
        "code": code(),
        "environment": dict(environment),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@functools.cache
def code() -> str:
    """The digest of the code a job runs, as this process loaded it: read once."""
    return sources.digest(*CODE)


def key_for(cfg: config.Config) -> str:
    """The key of `cfg` on its prepared arrays, in this process's environment (no Keras)."""
    meta = preprocess.read_meta(Path(cfg.paths.prepared))
    return key(cfg, meta["fingerprint"], provenance.environment())
