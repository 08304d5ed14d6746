"""One `python -m pipeline.sweep` run as a user runs it, in a subprocess, and what it left in
MLflow (the test's own store: DVC_ROOT is the test's folder, see conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from pipeline.tracking import names, store

from .data import write_prepared


class Sweep:
    """One finished `python -m pipeline.sweep` and what it left in MLflow."""

    def __init__(
        self,
        tmp_path: Path,
        *overrides: str,
        prepared: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        prepared = prepared or write_prepared(tmp_path / "prepared")
        self.folder = tmp_path / "multirun"
        command = [
            sys.executable,
            "-m",
            "pipeline.sweep",
            *overrides,
            *([] if any(o.startswith("model=") for o in overrides) else ["model.hidden_units=16"]),
            f"paths.prepared={prepared}",
            f"hydra.sweep.dir={self.folder}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
        done = subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=os.environ | (env or {}),
        )
        self.returncode, self.output = done.returncode, done.stdout + done.stderr
        self.store_made = (tmp_path / "mlflow.db").exists()  # before the client makes one
        self.client = MlflowClient(store.uri())
        experiment = self.client.get_experiment_by_name("mnist")
        self.runs = self.client.search_runs([experiment.experiment_id]) if experiment else []
        self.parents = [r for r in self.runs if r.data.tags.get(names.SWEEP) == "parent"]

    @property
    def parent(self):
        (parent,) = self.parents
        return parent

    def children(self):
        return [
            r
            for r in self.runs
            if r.data.tags.get("mlflow.parentRunId") == self.parent.info.run_id
        ]

    def artifact(self, run, name: str, tmp_path: Path) -> Path:
        return Path(self.client.download_artifacts(run.info.run_id, name, str(tmp_path)))
