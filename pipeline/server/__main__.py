"""The team's tracking server: MLflow on PostgreSQL, with artifacts proxied by the server.

    python -m pipeline.server [--data server] [--host 127.0.0.1] [--port 5000] [--auth]
    (what `make server` runs)

The first start creates a private PostgreSQL cluster in DATA/postgres and the database
`mlflow` in it; every start brings the database up, then `mlflow server` on it, with the
artifacts in DATA/artifacts (or `--artifacts s3://...`). Everyone else sets
`MLFLOW_TRACKING_URI=http://HOST:PORT`, and their `dvc repro` and sweeps log there, model
files included. Ctrl-C or SIGTERM stops the MLflow server, then the database; the runs stay
in DATA for the next start. While it serves, it checks every few seconds that the database
runs, and starts it again if it has stopped; its /health answers 503 while the database does
not answer (pipeline/ui/apps.py).

The database has no TCP port at all: it listens on a Unix socket in a private folder, so only
the MLflow server reaches it. The MLflow server listens on 127.0.0.1 unless `--host` names
another address, which it refuses without `--auth`: MLflow's basic auth, with an admin
password you set in MLFLOW_AUTH_ADMIN_PASSWORD for the first start, which MLflow makes the
admin with; the password goes to `mlflow server` on that start only, and never to the database.
As root, PostgreSQL (which refuses to run as root) runs as the `postgres` user, and owns
DATA/postgres.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import os
import secrets
import subprocess
import time
from importlib.metadata import entry_points
from pathlib import Path

from pipeline import PipelineError, Stopped
from pipeline.common import entry, files, project
from pipeline.server.postgres import Postgres, driver
from pipeline.ui import __main__ as ui

log = logging.getLogger(__name__)

PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own: the admin's first password
LEGACY_PASSWORD = "password1234"  # older MLflows' default, which MLflow 3.17 refuses
WATCH_SECONDS = 2.0  # how often serve() checks that the database runs


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


def _take_password() -> str:
    """The admin password, taken out of this process' environment, so that nothing it starts
    inherits it: os.environ.pop unsets it, and its bytes are overwritten where the process'
    first environment lies, which /proc/PID/environ (and `ps e`) show whatever os.environ says
    later."""
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if password and os.name == "posix":
        getenv = ctypes.CDLL(None).getenv
        getenv.restype = ctypes.c_void_p
        where = getenv(PASSWORD_VARIABLE.encode())
        if where:
            ctypes.memset(where, 0, len(ctypes.string_at(where)))
    os.environ.pop(PASSWORD_VARIABLE, None)
    return password


def _admin_exists(db: Postgres) -> bool:
    """Whether MLflow has made its admin user (table `users` of `mlflow_auth`) already."""
    if not db.exists("mlflow_auth"):
        return False
    with db.connect("mlflow_auth") as conn:
        if conn.execute("SELECT to_regclass('users')").fetchone() == (None,):
            return False
        found = conn.execute("SELECT 1 FROM users WHERE username = 'admin'").fetchone()
        return found is not None


def _auth_environment(data: Path, db: Postgres, password: str) -> dict[str, str]:
    """What `mlflow server` needs for basic auth: its config, a secret key, and the admin
    password while there is no admin yet (MLflow makes it with that on the first start)."""
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(data, db)),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(data / "secret-key"),
    }
    if _admin_exists(db):
        if password:
            log.info("the admin exists already: %s is not used", PASSWORD_VARIABLE)
        return env
    if len(password) < 12 or password == LEGACY_PASSWORD:
        raise PipelineError(
            f"--auth needs an admin password of 12 or more characters in "
            f"{PASSWORD_VARIABLE} on its first start (not {LEGACY_PASSWORD}): export "
            f"{PASSWORD_VARIABLE}=... and start it again"
        )
    return env | {PASSWORD_VARIABLE: password}


def _auth_config(data: Path, db: Postgres) -> Path:
    """MLflow's basic-auth config: its users in the database `mlflow_auth` of the same cluster.
    Users the admin adds may EDIT every experiment (a team logs into shared ones, `mnist`
    first; the admin can narrow it per experiment)."""
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


def app_name(auth: bool) -> str:
    """Our MLflow app (pipeline/ui/apps.py), with basic auth or without."""
    return "team-basic-auth" if auth else "team"


def command(args: argparse.Namespace, backend: str) -> list[str]:
    """The `mlflow server` command line (no secrets in it: those go in the environment)."""
    options = ["--artifacts-destination", args.artifacts, "--serve-artifacts"]
    options += ["--app-name", app_name(args.auth)]
    if args.allowed_hosts:
        options += ["--allowed-hosts", args.allowed_hosts]
    return ui.mlflow_server(backend, args.host, args.port, args.workers, *options)


def _check(args: argparse.Namespace) -> None:
    """Refuse what would expose the runs, or cannot start, before anything is made."""
    if not _loopback(args.host) and not args.auth:
        raise PipelineError(
            f"--host {args.host} would let anyone who reaches it read and change "
            "every run: add --auth (MLflow's basic auth, with the admin password "
            f"in {PASSWORD_VARIABLE}), or keep the default 127.0.0.1"
        )
    driver()  # says how to install it
    if not entry_points(group="mlflow.app", name=app_name(args.auth)):
        raise PipelineError(
            f"MLflow does not know the app {app_name(args.auth)}: this project is not "
            "installed where the server runs; pip install -c constraints.txt -e "
            "'.[server]' (`make server` does), then start it again"
        )


def serve(args: argparse.Namespace) -> None:
    """The database, then `mlflow server` on it, until the server exits or is stopped."""
    password = _take_password()  # first: whatever happens next, nothing inherits it
    _check(args)
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    if args.artifacts is None:
        args.artifacts = str(data / "artifacts")
    db = Postgres(data / "postgres")
    db.create()
    with db.running() as backend:
        db.ensure("mlflow")
        env = dict(os.environ)
        if args.auth:
            env |= _auth_environment(data, db, password)
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
            code = _watch(server, db)
        except (KeyboardInterrupt, Stopped):
            code = 0
            log.info("stopping the MLflow server")
        finally:
            entry.stop_group(server)  # the MLflow server and its workers
    if code != 0:
        raise PipelineError(f"the MLflow server exited with {code} (its messages are above)")


def _watch(server: subprocess.Popen, db: Postgres) -> int:
    """Wait for the MLflow server to exit, and return its status; meanwhile check every
    WATCH_SECONDS that the database runs, and start it again when it has stopped. If it does
    not start, a PipelineError: the caller stops the MLflow server, which has no database."""
    while True:
        time.sleep(WATCH_SECONDS)  # Ctrl-C and SIGTERM cut it short: they raise at once
        code = server.poll()
        if code is not None:
            return code
        why = db.stopped()
        if why is None:
            continue
        log.warning("the database in %s stopped (%s): restarting it", db.pgdata, why)
        began = time.monotonic()
        try:
            db.restart()
        except PipelineError as err:
            raise PipelineError(
                f"{err}; stopped the MLflow server too: fix what that log says, then start "
                "it again"
            ) from None
        log.warning(
            "the database in %s runs again (restarted in %.1f s)",
            db.pgdata,
            time.monotonic() - began,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=project.root() / "server",
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
    entry.run(main)
