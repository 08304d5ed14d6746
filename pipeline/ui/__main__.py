"""The MLflow UI on this project's store, for this machine only.

    python -m pipeline.ui [--port 5000]        (what `make ui` runs)

It runs `mlflow server` on the project's `mlflow.db` and `mlartifacts/` (the same store the
stages and sweeps write; `MLFLOW_TRACKING_URI` if that names a database), bound to 127.0.0.1,
with MLflow's security defaults as they are: no extra allowed hosts or CORS origins, the
security middleware on. One worker is plenty for one person. The app is MLflow's own, opening
in its training view (`pipeline.ui.training_view`). The console shows errors, not every request;
Ctrl-C stops the server and all it started, with one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from pipeline import PipelineError, Stopped, config
from pipeline.common import entry
from pipeline.tracking import store

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
APP = "training-view"  # pipeline/ui/apps.py: MLflow's app, opening in its training view
# uvicorn's line per request is not for a person browsing; errors still show
QUIET = ["--uvicorn-opts", "--no-access-log"]
# Starlette's deprecation of what MLflow's server imports: MLflow's to fix, not the user's
WARNINGS = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"


def experiment_url(base: str, experiment_id: str | None) -> str:
    """Where a trainer looks first: the experiment's runs (the list without one)."""
    where = f"/{experiment_id}" if experiment_id else ""
    return f"{base}/#/experiments{where}"


def _experiment_id() -> str | None:
    """The id of the pipeline's experiment in the project's store, if it has one yet."""
    found = store.connect().get_experiment_by_name(config.from_conf().tracking.experiment)
    return found.experiment_id if found else None


def mlflow_server(backend: str, host: str, port: int, workers: int, *options: str) -> list[str]:
    """The `mlflow server` command line on the store `backend`, listening on host:port with
    `workers` workers, and `options`: what this UI and the team's server (`pipeline.server`)
    run."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *options,
    ]


def command(port: int) -> list[str]:
    """This UI's `mlflow server` on the project's own store: one worker, 127.0.0.1 only."""
    uri = store.uri()
    if uri.startswith(("http://", "https://", "databricks")):
        raise PipelineError(
            f"MLFLOW_TRACKING_URI is a server ({uri}): open it in a browser "
            "instead, or unset it to browse this project's own store"
        )
    return mlflow_server(uri, HOST, port, 1, "--app-name", APP, *QUIET)


def serve(server: list[str]) -> None:
    """Run `server` in a process group of its own until it ends, or until Ctrl-C or SIGTERM
    here stops it and every worker it started (the terminal's Ctrl-C reaches only this
    process, so the server's workers print no tracebacks of their own)."""
    env = os.environ | {"PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", WARNINGS)}
    process = subprocess.Popen(server, env=env, start_new_session=True)
    try:
        status = process.wait()
    except (KeyboardInterrupt, Stopped):
        entry.stop_group(process, grace=15)
        log.info("stopped the MLflow UI")
        return
    except BaseException:
        entry.stop_group(process, grace=15)
        raise
    if status:
        raise PipelineError(f"the MLflow server exited with status {status} (its errors above)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.ui",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    server = command(args.port)
    log.info(
        "MLflow UI for %s: open %s (the training runs; Ctrl-C stops it)",
        store.uri(),
        experiment_url(f"http://{HOST}:{args.port}", _experiment_id()),
    )
    serve(server)


if __name__ == "__main__":
    entry.run(main)
