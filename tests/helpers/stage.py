"""Stages run as DVC runs them, `python -m pipeline.<stage>`, in a project folder of their own
(tiny synthetic digits, the test's own store), and the temporary files a killed one leaves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from pipeline import config
from pipeline.tracking import store

from .data import write_prepared

STAGE_TIMEOUT_S = 300
TEMPORARY = re.compile(r"\..+\.\d+\..+")  # files.replacing's: .<name>.<pid>.<random><suffix>


def temporaries(folder: Path) -> list[str]:
    """Temporary files of interrupted writes, anywhere under `folder`."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob(".*")
        if p.is_file() and TEMPORARY.fullmatch(p.name)
    )


class Stage:
    """A project folder with params.yaml (the real config, shrunk) and prepared synthetic
    digits, where stages run as subprocesses."""

    def __init__(self, folder: Path, *overrides: str) -> None:
        self.path = folder
        plain = config.compose(["model.hidden_units=16", "train.batch_size=32", *overrides])
        (folder / "params.yaml").write_text(config.dump(plain))
        write_prepared(folder / "data" / "prepared")

    def command(self, stage: str, *args: str) -> list[str]:
        return [sys.executable, "-m", f"pipeline.{stage}", *args]

    def run(
        self, stage: str, *args: str, env: dict | None = None, **kwargs
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(stage, *args),
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=STAGE_TIMEOUT_S,
            env=os.environ | (env or {}),
            **kwargs,
        )

    def start(self, stage: str, log: Path, env: dict | None = None) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(
                self.command(stage),
                cwd=self.path,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | (env or {}),
            )

    def runs(self) -> list:
        client = MlflowClient(store.uri())
        experiment = client.get_experiment_by_name("mnist")
        return client.search_runs([experiment.experiment_id]) if experiment else []

    def leftovers(self) -> list[str]:
        return temporaries(self.path)
