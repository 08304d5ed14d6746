"""`hydra/sweeper=search` (conf/hydra/sweeper/search.yaml): the search of `pipeline.search`
run as a Hydra sweep, each job through the launcher configured (basic: in this process)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class SearchSweeper(Sweeper):
    def __init__(self, **sweeper: Any) -> None:
        self.sweeper = sweeper  # hydra.sweeper: the settings and params (driver.plan)
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_config = config
        self.job_launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _run(self, overrides: list[str]) -> tuple[float | None, str | None]:
        """One job through the launcher: its return (validation accuracy) and run id."""
        [done] = self.job_launcher.launch([overrides], initial_job_idx=self.job_idx)
        self.job_idx += 1
        value = done.return_value  # raises what the job raised (a Ctrl-C)
        record = Path(str(done.hydra_cfg.hydra.runtime.output_dir)) / "run.json"  # type: ignore[union-attr]
        run_id = json.loads(record.read_text())["run_id"] if record.exists() else None
        return (float(value) if value is not None else None), run_id

    def sweep(self, arguments: list[str]) -> Sequence[Any]:
        from pipeline.search import driver  # here: Hydra's discovery imports every plugin

        seed = int(OmegaConf.select(self.hydra_config, "train.seed"))
        space, settings, seed = driver.plan(self.sweeper, arguments, seed)
        search = driver.Search(space, settings, self._run, seed)
        try:
            return [search(Path(str(self.hydra_config.hydra.sweep.dir)))]
        except Exception:  # Hydra ends no sweep that raised: its parent run is not left RUNNING
            from pipeline.tracking import sweeps

            sweeps.end_own("FAILED")
            raise
