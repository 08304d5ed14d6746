"""The team's tracking server as the tests start it: `python -m pipeline.server` (PostgreSQL
and `mlflow server`) on a free loopback port, in a data folder the `postgres` user reaches."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.server import postgres

from .processes import answers, free_port


def require_postgres() -> None:
    """Skip the calling test module where the `server` extra or PostgreSQL is missing."""
    pytest.importorskip("psycopg", reason="pip install -e '.[server]' (make test-all does)")
    try:
        postgres.pg_program("initdb")
    except Exception as err:  # noqa: BLE001 - the reason is printed in the skip
        pytest.skip(f"{err} (make test-all installs it)", allow_module_level=True)


def reachable_folder(prefix: str) -> Path:
    """A new folder in /tmp that the `postgres` user can reach when the tests run as root
    (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


class Server:
    """A `python -m pipeline.server` on a free loopback port (or `port`: the one a server
    stopped before had), in a data folder of its own."""

    def __init__(
        self,
        data: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.data, self.port, self.prefix = data, port or free_port(), prefix
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"server-{self.port}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "pipeline.server",
                    "--data",
                    str(data),
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    *args,
                ],
                stdout=log,
                stderr=log,
                env=os.environ | (env or {}),
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited:\n{self.output()[-3000:]}"
            if self.answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"no answer in {timeout} s:\n{self.output()[-3000:]}")

    def answers(self) -> bool:
        """Its /health answers, asked from where it runs (`prefix`: another network)."""
        if self.prefix:
            probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
            return (
                subprocess.run(
                    [*self.prefix, sys.executable, "-c", probe, f"{self.uri}/health"],
                    capture_output=True,
                    timeout=30,
                ).returncode
                == 0
            )
        return answers(f"{self.uri}/health", timeout=2)

    def health(self) -> int:
        """The status its /health answers with; 0 for no answer."""
        return status(f"{self.uri}/health")

    def search(self, user: str | None = None, password: str | None = None) -> int:
        """The status of an API call any user may make (search one experiment), as `user`."""
        return status(
            f"{self.uri}/api/2.0/mlflow/experiments/search?max_results=1", user, password
        )

    def stop(self) -> int:
        """SIGTERM, as a user's Ctrl-C or a service manager sends it; SIGKILL after 60 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def database_up(self) -> bool:
        return postgres.Postgres(self.data / "postgres").up()

    def postmaster(self) -> int:
        """The database's postmaster (the first line of postmaster.pid)."""
        return int((self.data / "postgres/postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """Every process the server runs: `pipeline.server`, `mlflow server` with its workers
        and job runner, the postmaster (a child of init: pg_ctl daemonizes it) and its
        backends."""
        return tree(self.proc.pid, self.postmaster())

    def sql(self, query: str, *args: str) -> list[tuple]:
        """Ask the cluster itself (its socket folder is line 5 of postmaster.pid)."""
        import psycopg  # the `server` extra: only the tests that start a server need it

        socket_dir = (self.data / "postgres/postmaster.pid").read_text().splitlines()[4]
        with psycopg.connect(host=socket_dir, user="mlflow", dbname="mlflow") as conn:
            return conn.execute(query, args).fetchall()


def status(url: str, user: str | None = None, password: str | None = None) -> int:
    """The HTTP status `url` answers with, asked as `user` if given (basic auth); 0 for none."""
    request = urllib.request.Request(url)
    if user:
        basic = b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def tree(*pids: int) -> list[int]:
    """`pids` and every process they started, and those started, and so on (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """Processes stopped (SIGSTOP) inside the block, as a hung machine would hold them."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def environment(pid: int) -> bytes:
    """The environment process `pid` started with, as /proc shows it (`ps e` too)."""
    return Path(f"/proc/{pid}/environ").read_bytes()
