"""MNIST as a reproducible pipeline: download -> preprocess -> train -> evaluate."""

import os

# Nothing leaves the machine unasked: MLflow's usage telemetry is off unless the user sets
# MLFLOW_DISABLE_TELEMETRY=false (DVC's analytics are off in .dvc/config).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class PipelineError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class Stopped(BaseException):
    """SIGTERM arrived (`kill`, a scheduler, a DVC queue being stopped): like Ctrl-C's
    KeyboardInterrupt, it unwinds every `with` block on its way out, so temporary files are
    removed and the MLflow run is marked KILLED."""
