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
import ipaddress
import logging
import os
import secrets
import subprocess
from pathlib import Path

from pipeline import PipelineError, Stopped, entry, files, ui
from pipeline.postgres import Postgres, driver
from pipeline.tracking import store

log = logging.getLogger(__name__)

PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own: the admin's first password


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
    options = ["--artifacts-destination", args.artifacts, "--serve-artifacts"]
    if args.auth:
        options += ["--app-name", "basic-auth"]
    if args.allowed_hosts:
        options += ["--allowed-hosts", args.allowed_hosts]
    return ui.mlflow_server(backend, args.host, args.port, args.workers, *options)


def serve(args: argparse.Namespace) -> None:
    if not _loopback(args.host) and not args.auth:
        raise PipelineError(
            f"--host {args.host} would let anyone who reaches it read and change "
            "every run: add --auth (MLflow's basic auth, with the admin password "
            f"in {PASSWORD_VARIABLE}), or keep the default 127.0.0.1"
        )
    driver()  # before anything is made: says how to install it
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
            entry.stop_group(server)  # the MLflow server and its workers
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
    entry.run(main)
