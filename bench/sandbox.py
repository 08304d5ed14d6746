"""A throwaway git copy of this project: where the benchmark and the end-to-end tests run, so
the workspace, its DVC outputs and its MLflow store are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def copy_project(dest: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Copy the project's tracked and unignored files (but those under `skip`) to `dest` and
    commit them to a new git repo there. Return the environment to run it in: this venv first
    on PATH, and no MLflow, DVC or Keras settings inherited from the caller (so the Keras
    backend is the project's default, as for a new user; its own Keras home)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in listed.splitlines():
        if (ROOT / name).is_file() and not name.startswith(skip):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "KERAS_"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "KERAS_HOME": str(dest.parent / "keras-home"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GIT_AUTHOR_NAME": "sandbox",
        "GIT_AUTHOR_EMAIL": "sandbox@example.com",
        "GIT_COMMITTER_NAME": "sandbox",
        "GIT_COMMITTER_EMAIL": "sandbox@example.com",
    }
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "baseline"],
    ):
        subprocess.run(command, cwd=dest, env=env, capture_output=True, check=True)
    return env
