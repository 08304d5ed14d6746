"""MNIST as a reproducible pipeline: download -> preprocess -> train -> evaluate.

Importing it changes two things in the process, before any module of ours imports Keras: the
Keras backend's default, and Keras' import, left without its scikit-learn wrapper and image
gallery (`pipeline.common.imports`: a second off each stage's start). The entry points
(`entry.run`, the sweep's main, the server) set the rest of the environment, logging and
signal handlers, once (`entry.setup`).
"""

import os

# Keras picks its backend once, when it is first imported, from KERAS_BACKEND. The pipeline's
# is JAX, the faster end to end here (docs/performance.md#backends-jax-and-tensorflow);
# KERAS_BACKEND=tensorflow picks TensorFlow. Set here, before any module of ours imports Keras.
DEFAULT_BACKEND = "jax"
os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)

from pipeline.common import imports  # noqa: E402  (nothing heavy: no Keras, no NumPy)

imports.leave_out_keras_extras()


class PipelineError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class Stopped(BaseException):
    """SIGTERM arrived (`kill`, a scheduler, a DVC queue being stopped): like Ctrl-C's
    KeyboardInterrupt, it unwinds every `with` block on its way out, so temporary files are
    removed and the MLflow run is marked KILLED."""
