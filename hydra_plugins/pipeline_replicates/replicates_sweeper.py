"""Hydra's basic sweeper, which also sweeps `train.seed` over the `replicates` seeds of every
configuration (`pipeline.replicates`): `python -m pipeline.sweep -m replicates=3 ...`."""

# No `from __future__ import annotations`: Hydra runs this module outside sys.modules while
# it scans for plugins, where a dataclass cannot resolve string annotations.
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class ReplicatesSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.pipeline_replicates.replicates_sweeper.ReplicatesSweeper"


class ReplicatesSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from pipeline import replicates  # the project's, once a sweep runs

        assert self.config is not None  # set by Hydra's setup()
        count = int(self.config.replicates)
        if count > 1:
            arguments = replicates.with_seeds(
                [*self._parse_config(), *arguments], int(self.config.train.seed), count
            )
            self.params = {}  # now in `arguments`
        return super().sweep(arguments)


ConfigStore.instance().store(
    group="hydra/sweeper", name="replicates", node=ReplicatesSweeperConf, provider="pipeline"
)
