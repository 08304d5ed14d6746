"""Copies of this project to run it in (bench.sandbox's, which the benchmark uses too), and
commands run there."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlflow import MlflowClient

from bench.sandbox import copy_project

__all__ = ["Project", "copy_project", "sh"]


def sh(cwd: Path, env: dict, *cmd: str) -> str:
    """Run `cmd` in `cwd`; fail the test, with the end of its output, if it fails."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


class Project:
    """A copy of this project in a git repo of its own, and its MLflow store."""

    def __init__(self, path: Path, env: dict) -> None:
        self.path, self.env = path, env

    @classmethod
    def copy(cls, path: Path) -> Project:
        """This project's files copied to `path`, in a fresh git repo (bench.sandbox)."""
        return cls(path, copy_project(path))

    def sh(self, *cmd: str) -> str:
        return sh(self.path, self.env, *cmd)

    def runs(self):
        client = MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")
        return client, client.search_runs(
            [client.get_experiment_by_name("mnist").experiment_id], order_by=["start_time"]
        )
