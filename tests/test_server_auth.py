"""The team server with --auth, for real: the admin password reaches `mlflow server` on the
first start only, when MLflow makes the admin with it, and never `pipeline.server` itself nor
PostgreSQL; its /health, basic auth's app composed with ours, fails while the database hangs.
(tests/test_server.py: basic auth asking every client.)"""

from __future__ import annotations

import contextlib
import shutil
import time

import pytest

from pipeline.server import __main__ as server
from pipeline.ui import apps as server_app

from .helpers.servers import Server, environment, paused, reachable_folder, require_postgres, tree

pytestmark = pytest.mark.server
require_postgres()

PASSWORD = "a long test password"


@pytest.fixture
def data_dir():
    folder = reachable_folder("mlflow-server-")
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def _holding(processes: list[int]) -> list[int]:
    """Those of `processes` that started with PASSWORD in their environment."""
    found = []
    for pid in processes:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it ended
            if PASSWORD.encode() in environment(pid):
                found.append(pid)
    return found


def test_the_admin_password_reaches_mlflow_on_the_first_start_only(data_dir):
    first = Server(data_dir, "--auth", env={server.PASSWORD_VARIABLE: PASSWORD}).wait_up()
    try:
        assert _holding([first.proc.pid, *tree(first.postmaster())]) == []
        assert _holding(first.processes())  # MLflow's: they make the admin with it
    finally:
        assert first.stop() == 0

    again = Server(data_dir, "--auth", env={server.PASSWORD_VARIABLE: PASSWORD}).wait_up()
    try:
        assert again.search("admin", PASSWORD) == 200
        assert len(again.processes()) >= 4  # us, mlflow server, uvicorn, the postmaster...
        assert _holding(again.processes()) == []
        assert f"the admin exists already: {server.PASSWORD_VARIABLE} is not used" in (
            again.output()
        )

        # A database that hangs makes /health 503, within its bound, then 200 again.
        with paused(tree(again.postmaster())):
            began = time.monotonic()
            assert again.health() == 503
            assert time.monotonic() - began < server_app.PROBE_SECONDS + 2
        assert again.health() == 200
    finally:
        assert again.stop() == 0
