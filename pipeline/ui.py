"""The MLflow UI on this project's store, for this machine only.

    python -m pipeline.ui [--port 5000]        (what `make ui` runs)

It becomes `mlflow server` on the project's `mlflow.db` and `mlartifacts/` (the same store the
stages and sweeps write; `MLFLOW_TRACKING_URI` if that names a database), bound to 127.0.0.1,
with MLflow's security defaults as they are: no extra allowed hosts or CORS origins, the
security middleware on. One worker is plenty for one person.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline import PipelineError, config, entry
from pipeline.tracking import store

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# MLflow 3.17's UI opens an experiment in its GenAI view (traces, an assistant) unless the
# link asks for model training: the `mlflow.experimentKind` tag alone no longer decides, and
# the experiment list's own links drop the choice.
TRAINING_VIEW = "?workflowType=machine_learning"


def experiment_url(base: str, experiment_id: str | None) -> str:
    """Where a trainer looks first: the experiment's training runs (the list without one)."""
    where = f"/{experiment_id}" if experiment_id else ""
    return f"{base}/#/experiments{where}{TRAINING_VIEW}"


def _experiment_id() -> str | None:
    """The id of the pipeline's experiment in the project's store, if it has one yet."""
    found = store.connect().get_experiment_by_name(config.defaults().tracking.experiment)
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
    return mlflow_server(uri, HOST, port, 1)


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
    os.execv(server[0], server)


if __name__ == "__main__":
    entry.run(main)
