"""The team's tracking server: MLflow on PostgreSQL, with artifacts proxied by the server.

    python -m pipeline.server [--data server] [--host 127.0.0.1] [--port 5000] [--auth]
    (what `make server` runs)

The first start creates a private PostgreSQL cluster in DATA/postgres and the database
`mlflow` in it; every start brings the database up, then `mlflow server` on it, with the
artifacts in DATA/artifacts (or `--artifacts s3://...`). Everyone else sets
`MLFLOW_TRACKING_URI=http://HOST:PORT`, and their `dvc repro` and sweeps log there, model
files included. Ctrl-C or SIGTERM stops the MLflow server, then the database; the runs stay
in DATA for the next start.

The database has no TCP port at all: it listens on a Unix socket in a private folder, so only
the MLflow server reaches it. The MLflow server listens on 127.0.0.1 unless `--host` names
another address, which it refuses without `--auth`: MLflow's basic auth, with an admin
password you set in MLFLOW_AUTH_ADMIN_PASSWORD. As root, PostgreSQL (which refuses to run as
root) runs as the `postgres` user, and owns DATA/postgres.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline import PipelineError, Stopped, cli, files
from pipeline.tracking import store

log = logging.getLogger(__name__)

DB_USER = "mlflow"
PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own: the admin's first password


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


def _pg(*args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's owner; a PipelineError if it fails."""
    owner = _owner()
    done = subprocess.run(
        [pg_program(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        user=owner.pw_uid if owner else None,
        group=owner.pw_gid if owner else None,
    )
    if check and done.returncode != 0:
        raise PipelineError(f"{args[0]} failed: {(done.stderr or done.stdout).strip()}")
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
            options = f"-c listen_addresses='' -p 5432 -k {shlex.quote(str(self.socket_dir))}"
            self._pg_ctl("start", "--log", str(self.pgdata / "server.log"), "--options", options)
            try:
                yield self.uri("mlflow")
            finally:
                self._pg_ctl("stop", "--mode", "fast")
                log.info("stopped the database %s", self.pgdata)
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _pg_ctl(self, command: str, *args: str) -> None:
        """`pg_ctl COMMAND` on this cluster, waiting at most a minute for it to finish."""
        _pg("pg_ctl", command, "--pgdata", str(self.pgdata), "--wait", "--timeout", "60", *args)

    def up(self) -> bool:
        return _pg("pg_ctl", "status", "--pgdata", str(self.pgdata), check=False).returncode == 0

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg://{DB_USER}@/{database}?host={self.socket_dir}&port=5432"

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
        return _psycopg().connect(
            host=str(self.socket_dir), port=5432, user=DB_USER, dbname=database, autocommit=True
        )


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise PipelineError(
            "the tracking server needs psycopg: pip install -c constraints.txt "
            "-e '.[server]' (`make server` does)"
        ) from None
    return psycopg


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(path: Path) -> str:
    """A random secret kept in `path` (mode 0600), made on first use."""
    if not path.is_file():
        files.write_text(path, secrets.token_hex(32), mode=0o600)
    return path.read_text().strip()


def _auth_config(data: Path, db: Postgres) -> Path:
    """MLflow's basic-auth config: its users in the database `mlflow_auth` of the same cluster.
    Users the admin adds may EDIT every experiment (a team logs into shared ones, `mnist`
    first; the admin can narrow it per experiment). MLflow makes the admin user on the first
    start, with the password in MLFLOW_AUTH_ADMIN_PASSWORD, and keeps it after that."""
    if not db.exists("mlflow_auth") and len(os.environ.get(PASSWORD_VARIABLE, "")) < 12:
        raise PipelineError(
            f"--auth needs an admin password of 12 or more characters in "
            f"{PASSWORD_VARIABLE} on its first start: export "
            f"{PASSWORD_VARIABLE}=... and start it again"
        )
    db.ensure("mlflow_auth")
    config = data / "auth.ini"
    files.write_text(
        config,
        "[mlflow]\ndefault_permission = EDIT\n"
        f"database_uri = {db.uri('mlflow_auth')}\nadmin_username = admin\n"
        "authorization_function = "
        "mlflow.server.auth:authenticate_request_basic_auth\n",
        mode=0o600,
    )
    return config


def command(args: argparse.Namespace, backend: str) -> list[str]:
    """The `mlflow server` command line (no secrets in it: those go in the environment)."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        args.artifacts,
        "--serve-artifacts",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    if args.auth:
        cmd += ["--app-name", "basic-auth"]
    if args.allowed_hosts:
        cmd += ["--allowed-hosts", args.allowed_hosts]
    return cmd


def serve(args: argparse.Namespace) -> None:
    if not _loopback(args.host) and not args.auth:
        raise PipelineError(
            f"--host {args.host} would let anyone who reaches it read and change "
            "every run: add --auth (MLflow's basic auth, with the admin password "
            f"in {PASSWORD_VARIABLE}), or keep the default 127.0.0.1"
        )
    _psycopg()
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    if args.artifacts is None:
        args.artifacts = str(data / "artifacts")
    db = Postgres(data / "postgres")
    db.create()
    env = dict(os.environ)
    with db.running() as backend:
        db.ensure("mlflow")
        if args.auth:
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(_auth_config(data, db))
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret(data / "secret-key")
        server = subprocess.Popen(command(args, backend), env=env, start_new_session=True)
        log.info(
            "MLflow server on http://%s:%d with the database %s and artifacts in %s; "
            "clients: export MLFLOW_TRACKING_URI=http://%s:%d (Ctrl-C stops it)",
            args.host,
            args.port,
            db.pgdata,
            args.artifacts,
            args.host,
            args.port,
        )
        try:
            code = server.wait()
        except (KeyboardInterrupt, Stopped):
            code = 0
            log.info("stopping the MLflow server")
        finally:
            cli.stop_group(server)  # the MLflow server and its workers
    if code != 0:
        raise PipelineError(f"the MLflow server exited with {code} (its messages are above)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=store.project_root() / "server",
        help="where the database and artifacts live (default: ./server)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--artifacts", help="where artifacts go: a folder or s3://... (default: DATA/artifacts)"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help=f"MLflow's basic auth; admin password in {PASSWORD_VARIABLE}",
    )
    parser.add_argument(
        "--allowed-hosts",
        help="Host headers it answers, as mlflow server's "
        "--allowed-hosts (needed for an address other than 127.0.0.1)",
    )
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    cli.run(main)
