"""The team's tracking server as the tests start it: `python -m pipeline.server` (PostgreSQL
and `mlflow server`) on a free loopback port, in a data folder the `postgres` user reaches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import postgres

from .processes import answers, free_port


def reachable_folder(prefix: str) -> Path:
    """A new folder in /tmp that the `postgres` user can reach when the tests run as root
    (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


class Server:
    """A `python -m pipeline.server` on a free loopback port, in a data folder of its own."""

    def __init__(
        self,
        data: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.data, self.port, self.prefix = data, free_port(), prefix
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

    def sql(self, query: str, *args: str) -> list[tuple]:
        """Ask the cluster itself (its socket folder is line 5 of postmaster.pid)."""
        import psycopg  # the `server` extra: only the tests that start a server need it

        socket_dir = (self.data / "postgres/postmaster.pid").read_text().splitlines()[4]
        with psycopg.connect(host=socket_dir, user="mlflow", dbname="mlflow") as conn:
            return conn.execute(query, args).fetchall()
