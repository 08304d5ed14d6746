"""A private PostgreSQL cluster for the team's tracking server (`pipeline.server`): made once
with initdb, started and stopped with pg_ctl, reachable only through a Unix socket in a
private folder. As root, PostgreSQL (which refuses to run as root) runs as the `postgres`
user, and owns the cluster's folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from pipeline import PipelineError
from pipeline.common import files, retry

log = logging.getLogger(__name__)

DB_USER = "mlflow"
CONNECT_SECONDS = 5  # a connection the database does not accept by then fails
RESTART_TRIES = 3
RESTART_PAUSE = 1.0  # s before the 2nd try, twice that before the 3rd: a killed postmaster's
# backends exit meanwhile
# What PostgreSQL's programs get of our environment: what they run with, and nothing else. The
# MLflow server's secrets (the admin password, its secret key, cloud keys for the artifacts)
# stay out of processes that anyone with the database's superuser can read, with COPY ...
# PROGRAM 'cat /proc/self/environ'.
PG_ENVIRONMENT = ("PATH", "LANG", "LANGUAGE", "TZ")


def pg_program(name: str) -> str:
    """A PostgreSQL server program: from PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if debian:
        return str(debian[-1])
    raise PipelineError(
        f"PostgreSQL's {name} is not installed: `make server` installs "
        "Debian's postgresql package; elsewhere install PostgreSQL and put its "
        "bin folder on PATH"
    )


def _owner() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL when we are root (it refuses root): the `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PipelineError(
            "PostgreSQL refuses to run as root, and there is no `postgres` "
            "user to run it: create one (Debian's postgresql package does), or "
            "start the server as an ordinary user"
        ) from None


def pg_environment() -> dict[str, str]:
    """The environment PostgreSQL's programs run in: PG_ENVIRONMENT and the locale (LC_*)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in PG_ENVIRONMENT or name.startswith("LC_")
    }


def _pg(*args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's owner, in `pg_environment()`; a
    PipelineError if it fails."""
    owner = _owner()
    done = subprocess.run(
        [pg_program(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env=pg_environment(),
        user=owner.pw_uid if owner else None,
        group=owner.pw_gid if owner else None,
    )
    if check and done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())
        raise PipelineError(f"{args[0]} failed: {said}")
    return done


def _give(path: Path) -> None:
    """Hand a folder we made to the cluster's owner (only when we are root)."""
    owner = _owner()
    if owner:
        os.chown(path, owner.pw_uid, owner.pw_gid)


class Postgres:
    """A private PostgreSQL cluster in `pgdata`, reachable only through a Unix socket."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.socket_dir: Path | None = None

    def create(self) -> bool:
        """initdb, once: into a temporary folder renamed into place, so a failed or stopped
        initdb leaves nothing half-made. True if it was created now."""
        if (self.pgdata / "PG_VERSION").is_file():
            return False
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise PipelineError(
                f"{self.pgdata} is not a PostgreSQL cluster, and not empty: move "
                "it away, or give the server another --data folder"
            )
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        partial = self.pgdata.with_name(f".{self.pgdata.name}.{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        try:
            _give(partial)
            _pg(
                "initdb",
                "--pgdata",
                str(partial),
                "--username",
                DB_USER,
                "--encoding",
                "UTF8",
                "--no-locale",
                "--auth-local",
                "trust",
                "--auth-host",
                "reject",
                "--no-instructions",
            )
            partial.rename(self.pgdata)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        log.info("created the PostgreSQL cluster %s", self.pgdata)
        return True

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Start it (the socket in a fresh private folder), yield its SQLAlchemy URI for
        database `mlflow`, stop it on the way out."""
        if self.up():
            raise PipelineError(
                f"the database in {self.pgdata} is already running: is another "
                "`python -m pipeline.server` using this folder? Stop that one "
                "first"
            )
        self.socket_dir = Path(tempfile.mkdtemp(prefix="mlflow-pg-"))
        try:
            _give(self.socket_dir)
            self._start()
            try:
                yield self.uri("mlflow")
            finally:
                self._stop()
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _start(self) -> None:
        """pg_ctl start: no TCP port, the socket in `socket_dir`, its log in server.log."""
        options = f"-c listen_addresses='' -p 5432 -k {shlex.quote(str(self.socket_dir))}"
        self._pg_ctl("start", "--log", str(self.log_file), "--options", options)

    def _stop(self) -> None:
        """pg_ctl stop, unless it has stopped already (it died, and could not be restarted)."""
        if self.up():
            self._pg_ctl("stop", "--mode", "fast")
            log.info("stopped the database %s", self.pgdata)

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"

    def restart(self) -> None:
        """Start it again after it died (`running()` started it): the same socket folder and
        options, RESTART_TRIES tries after growing pauses (`retry.call`); a PipelineError
        saying why (PostgreSQL's last FATAL line meanwhile) if none succeeds."""
        logged = self.log_file.stat().st_size if self.log_file.is_file() else 0

        def gave_up(tries: int, failed: PipelineError) -> PipelineError:
            return PipelineError(
                f"the database in {self.pgdata} stopped and did not start again in {tries} "
                f"tries ({self._last_fatal(logged) or failed}): see {self.log_file}"
            )

        retry.call(
            self._start,
            attempts=RESTART_TRIES,
            errors=PipelineError,
            retryable=lambda _: True,
            backoff=RESTART_PAUSE,
            give_up=gave_up,
        )

    def _last_fatal(self, offset: int) -> str | None:
        """PostgreSQL's last FATAL line in its log after `offset`, without its date."""
        with contextlib.suppress(OSError), open(self.log_file, "rb") as log_file:
            log_file.seek(offset)
            lines = log_file.read().decode(errors="replace").splitlines()
            fatal = [
                " ".join(line[line.index("FATAL") :].split()) for line in lines if "FATAL" in line
            ]
            return fatal[-1] if fatal else None
        return None

    def stopped(self) -> str | None:
        """Why its postmaster is not running, or None while it is: the pid in postmaster.pid,
        a live process. No program is started, so the server can ask every few seconds."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return "its postmaster has exited: there is no postmaster.pid"
        return None if files.alive(pid) else f"its postmaster, pid {pid}, has exited"

    def _pg_ctl(self, command: str, *args: str) -> None:
        """`pg_ctl COMMAND` on this cluster, waiting at most a minute for it to finish."""
        _pg("pg_ctl", command, "--pgdata", str(self.pgdata), "--wait", "--timeout", "60", *args)

    def up(self) -> bool:
        return _pg("pg_ctl", "status", "--pgdata", str(self.pgdata), check=False).returncode == 0

    def uri(self, database: str) -> str:
        """Its SQLAlchemy URI for `database`; a connection that it does not accept within
        CONNECT_SECONDS fails, so neither requests nor the server's /health hang on it."""
        return (
            f"postgresql+psycopg://{DB_USER}@/{database}?host={self.socket_dir}&port=5432"
            f"&connect_timeout={CONNECT_SECONDS}"
        )

    def exists(self, database: str) -> bool:
        with self.connect() as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
                ).fetchone()
                is not None
            )

    def ensure(self, database: str) -> bool:
        """CREATE DATABASE unless it exists; True if it was created now."""
        if self.exists(database):
            return False
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        log.info("created the database %s", database)
        return True

    def connect(self, database: str = "postgres"):
        return driver().connect(
            host=str(self.socket_dir),
            port=5432,
            user=DB_USER,
            dbname=database,
            autocommit=True,
            connect_timeout=CONNECT_SECONDS,
        )


def driver() -> ModuleType:
    """psycopg, the MLflow server's way into the database; a PipelineError saying how to
    install it where it is missing."""
    try:
        import psycopg
    except ImportError:
        raise PipelineError(
            "the tracking server needs psycopg: pip install -c constraints.txt "
            "-e '.[server]' (`make server` does)"
        ) from None
    return psycopg
