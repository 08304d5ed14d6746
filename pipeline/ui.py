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

from pipeline import PipelineError, cli
from pipeline.tracking import store

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def command(port: int) -> list[str]:
    uri = store.uri()
    if uri.startswith(("http://", "https://", "databricks")):
        raise PipelineError(
            f"MLFLOW_TRACKING_URI is a server ({uri}): open it in a browser "
            "instead, or unset it to browse this project's own store"
        )
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.ui",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    server = command(args.port)
    log.info("MLflow UI for %s on http://%s:%d (Ctrl-C stops it)", store.uri(), HOST, args.port)
    os.execv(server[0], server)


if __name__ == "__main__":
    cli.run(main)
