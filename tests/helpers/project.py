"""Copies of this project to run it in (bench.sandbox's, which the benchmark uses too), copies
of such a copy, and commands run there."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from mlflow import MlflowClient

from bench.sandbox import copy_project

from .processes import stop_processes_in

__all__ = ["Project", "copy_project", "sh"]


def sh(cwd: Path, env: dict, *cmd: str) -> str:
    """Run `cmd` in `cwd`; fail the test, with the end of its output, if it fails."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


class Project:
    """A copy of this project in a git repo of its own, its MLflow store, and the output of
    the command that made it what it is (`output`, empty for a fresh copy)."""

    def __init__(self, path: Path, env: dict, output: str = "") -> None:
        self.path, self.env, self.output = path, env, output

    @classmethod
    def copy(cls, path: Path) -> Project:
        """This project's files copied to `path`, in a fresh git repo (bench.sandbox)."""
        return cls(path, copy_project(path))

    def copy_to(self, path: Path) -> Project:
        """This project as it stands, copied to `path`: its git repo and DVC experiments, DVC
        cache, outputs, checkpoints and XLA's compilations, and its MLflow store, pointed at
        the copied artifacts; not DVC's temporary state (locks, records of past runs). The DVC
        cache's files are hard links: DVC keeps them read-only and replaces, never rewrites, one,
        and a copy of the prepared digits' 220 MB each time filled the CI machine's disk."""
        shutil.copytree(
            self.path,
            path,
            symlinks=True,
            ignore=_dvc_temporary_state,
            copy_function=_link_cached_else_copy,
        )
        if (path / "mlflow.db").exists():
            _relocate_store(path / "mlflow.db", self.path, path)
        return Project(
            path, self.env | {"KERAS_HOME": str(path.parent / "keras-home")}, self.output
        )

    @property
    def store(self) -> str:
        """The URI of its MLflow store."""
        return f"sqlite:///{self.path / 'mlflow.db'}"

    def sh(self, *cmd: str) -> str:
        return sh(self.path, self.env, *cmd)

    def run_queue(self, log: Path, jobs: int = 2) -> str:
        """`dvc queue start -j <jobs>` until nothing is queued or running; the last status."""
        # Into a file, not a pipe: the workers it starts outlive it and would hold a pipe open.
        with log.open("w") as out:
            subprocess.run(
                ["dvc", "queue", "start", "-j", str(jobs)],
                cwd=self.path,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
            )
        try:
            deadline = time.monotonic() + 480
            while re.search(r"\b(Queued|Running)\b", status := self._queue_status()):
                assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
                time.sleep(2)
        finally:  # the workers it started, even one that `dvc queue stop` leaves idle
            subprocess.run(
                ["dvc", "queue", "stop"],
                cwd=self.path,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
            )
            stop_processes_in(self.path)
        return status

    def _queue_status(self) -> str:
        """`dvc queue status`, asked again (5 times at most) where it read a worker's result
        file half-written: DVC's own race (treeverse/dvc#8014), not the queue's state."""
        for _ in range(5):
            done = subprocess.run(
                ["dvc", "queue", "status"],
                cwd=self.path,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            output = done.stdout + done.stderr
            if done.returncode == 0:
                return output
            half_written = r"unexpected error - (Expecting value|Extra data)"  # JSON it read
            assert re.search(half_written, output), f"dvc queue status failed:\n{output}"
            time.sleep(1)
        raise AssertionError(f"dvc queue status failed 5 times:\n{output}")

    def runs(self):
        client = MlflowClient(self.store, registry_uri=self.store)
        return client, client.search_runs(
            [client.get_experiment_by_name("mnist").experiment_id], order_by=["start_time"]
        )


def _dvc_temporary_state(folder: str, names: list[str]) -> list[str]:
    """What copytree leaves behind: .dvc/tmp, whose locks and run records name the folder."""
    return ["tmp"] if Path(folder).name == ".dvc" else []


def _link_cached_else_copy(src: str, dst: str) -> None:
    if "/.dvc/cache/files/" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _relocate_store(db: Path, old: Path, new: Path) -> None:
    """Replace `old` by `new` in every text of the MLflow store `db`: MLflow keeps absolute
    paths (artifact locations, model sources, the source file's tag), and a copy's new runs
    and models would otherwise go into the original's artifacts."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            for column in [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]:
                conn.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?1, ?2) '
                    f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?1) > 0',
                    (str(old), str(new)),
                )
