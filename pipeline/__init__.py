"""MNIST as a reproducible pipeline: download -> preprocess -> train -> evaluate.

Importing it changes nothing in the process: the entry points (`cli.run`, the sweep's main,
the server) set the environment, logging and signal handlers, once (`cli.setup`).
"""


class PipelineError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class Stopped(BaseException):
    """SIGTERM arrived (`kill`, a scheduler, a DVC queue being stopped): like Ctrl-C's
    KeyboardInterrupt, it unwinds every `with` block on its way out, so temporary files are
    removed and the MLflow run is marked KILLED."""
