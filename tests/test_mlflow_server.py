"""The `mlflow server` command lines that `make ui` and `make server` run: one builder, and
each keeps its own flags (the UI: this machine, one worker; the team server: its database,
proxied artifacts, its own app, with basic auth when asked)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

import pytest

from pipeline import PipelineError
from pipeline.server import __main__ as server
from pipeline.ui import __main__ as ui

MLFLOW = [sys.executable, "-m", "mlflow", "server"]


def test_the_ui_serves_the_projects_own_store_on_loopback_with_one_quiet_worker(tmp_path):
    assert ui.command(5000) == [
        *MLFLOW,
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
        "--workers",
        "1",
        "--app-name",
        "training-view",  # MLflow's app, opening in its training view
        "--uvicorn-opts",
        "--no-access-log",
    ]


def test_the_ui_refuses_a_tracking_server(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example.com:5000")
    with pytest.raises(PipelineError, match="open it in a browser instead, or unset it"):
        ui.command(5000)


def _team(**given) -> argparse.Namespace:
    settings = {"artifacts": "/srv/artifacts", "host": "127.0.0.1", "port": 5001, "workers": 2}
    return argparse.Namespace(**{"auth": False, "allowed_hosts": None, **settings, **given})


def test_the_team_server_proxies_artifacts_on_its_database():
    backend = "postgresql+psycopg://mlflow@/mlflow?host=/tmp/s&port=5432"
    assert server.command(_team(), backend) == [
        *MLFLOW,
        "--backend-store-uri",
        backend,
        "--host",
        "127.0.0.1",
        "--port",
        "5001",
        "--workers",
        "2",
        "--artifacts-destination",
        "/srv/artifacts",
        "--serve-artifacts",
        "--app-name",
        "team",
    ]


def test_the_team_server_adds_basic_auth_and_allowed_hosts_when_asked():
    command = server.command(
        _team(host="10.0.0.5", auth=True, allowed_hosts="mlflow.lab:5001"), "postgresql://x"
    )
    assert command[command.index("--host") + 1] == "10.0.0.5"
    assert command[-4:] == ["--app-name", "team-basic-auth", "--allowed-hosts", "mlflow.lab:5001"]
    assert "--serve-artifacts" in command


def test_the_team_servers_apps_are_installed_for_mlflow_to_find():
    names = {e.name: e.value for e in entry_points(group="mlflow.app")}
    assert names[server.app_name(auth=False)] == "pipeline.ui.apps:create_app"
    assert names[server.app_name(auth=True)] == "pipeline.ui.apps:create_auth_app"
