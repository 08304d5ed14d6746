"""Nothing leaves the machine unasked: MLflow's telemetry and DVC's analytics are off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .helpers.project import copy_project, sh


@pytest.mark.parametrize(("given", "expected"), [(None, "true"), ("false", "false")])
def test_mlflow_telemetry_is_off_in_an_entry_point_unless_the_user_turns_it_on(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    if given is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = given
    probe = (
        "import os; from pipeline.common import entry; "
        "entry.run(lambda argv: print(os.environ['MLFLOW_DISABLE_TELEMETRY']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == expected


def test_dvc_analytics_are_off_in_the_projects_own_config(tmp_path):
    env = copy_project(tmp_path / "project")
    assert sh(tmp_path / "project", env, "dvc", "config", "core.analytics").strip() == "false"
