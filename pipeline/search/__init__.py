"""The search: Optuna proposes configurations from a space written in Hydra's override
grammar, successive halving over epochs goes on through the checkpoint cache, and seeds race
before a best is named."""

from __future__ import annotations

from typing import Any

OUTCOME = "search.json"  # in the sweep's folder: what the search did, for its report
SWEEPER = "hydra_plugins.pipeline_search.search_sweeper.SearchSweeper"  # hydra/sweeper=search
OWN = ["train.epochs", "train.seed"]  # what the search sets in each job: its rung, its seed


def checked(hydra: Any, seed: int) -> list[str]:
    """For a search (`hydra/sweeper=search`), checked before its parent run opens (a
    ConfigError, one line, for what cannot be searched): the keys it sets in each job, which
    name its runs. Nothing for another sweeper."""
    if hydra.sweeper.get("_target_") != SWEEPER:
        return []
    from omegaconf import OmegaConf

    from pipeline.search import driver  # Optuna: only for a search

    sweeper = OmegaConf.to_container(hydra.sweeper, resolve=True)
    driver.plan(dict(sweeper), list(hydra.overrides.task), seed)  # type: ignore[arg-type]
    return OWN
