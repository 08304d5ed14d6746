"""Where the project's local state lives: the MLflow store, the checkpoint cache, XLA's
compilations."""

from __future__ import annotations

import os
from pathlib import Path

JAX_CACHE = ".jax-cache"  # XLA's compilations on JAX, beside the store (`model.keep_compilations`)
COMPILATIONS = "JAX_COMPILATION_CACHE_DIR"  # JAX's own variable for where they are kept


def root() -> Path:
    """Where the project's local state lives (the MLflow store, the checkpoint cache):
    `DVC_ROOT`, which DVC sets, also in `dvc exp` queue copies, else the working directory
    (a Hydra job runs there too)."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def compilations() -> str:
    """Where XLA's compilations are kept: JAX_COMPILATION_CACHE_DIR where the user set it,
    else `.jax-cache` in the project root."""
    return os.environ.get(COMPILATIONS) or str(root() / JAX_CACHE)
