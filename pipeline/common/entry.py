"""What every entry point shares, and the one way it reports progress and errors to a person.

The convention: a module that is a command has `main(argv: list[str] | None = None) -> None`,
which parses `argv` (argparse, so `--help` works) and raises a PipelineError for what the user
can fix, and ends with `if __name__ == "__main__": entry.run(main)`. The sweep alone differs:
Hydra's `@hydra.main` owns its command line (see pipeline/sweep/runner.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from pipeline import PipelineError, Stopped
from pipeline.common import stops

log = logging.getLogger("pipeline")

# What an entry point sets in its environment unless the user already has. Nothing leaves the
# machine unasked: MLflow's usage telemetry is off (DVC's analytics are off in .dvc/config). A
# tracking server that is down waits out a restart: each call tries 6 times over about 30 s
# (refused), or 90 s (no answer, 10 s a try), then fails, not after MLflow's default of
# several minutes of retries. docs/troubleshooting.md gives these bounds. A training run's
# system metrics (`runs.start`) are sampled every half second, not MLflow's 10: a 1-epoch
# training (2 s) gets 4 samples, where at 10 s it gets none and at 1 s one, its first, whose
# CPU reads 0 (psutil counts from its first call in MLflow's sampling thread).
ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5",
}

# Loggers whose INFO lines say nothing a person needs: JAX's, each accelerator it looks for
# and does not find ("Unable to initialize backend 'tpu': ... Failed to open libtpu.so" on a
# machine without one; a GPU it cannot use is a WARNING, still shown); MLflow's system metrics
# monitor's start, stop and "Skip logging GPU metrics" on each run.
QUIET = ("jax._src.xla_bridge", "mlflow.system_metrics")


def environment() -> None:
    """Set the defaults above where the user has not set them."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def quiet() -> None:
    """Only WARNING and above from the loggers in QUIET (after the logging is set up: by
    `setup`, or by Hydra in a sweep's job)."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup() -> None:
    """What a stage's entry point does first, once: the environment defaults, log lines on
    stderr, and SIGTERM handled like Ctrl-C."""
    environment()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    quiet()
    stops.handle()


def run(main: Callable[[list[str]], None]) -> None:
    """Run an entry point's `main(argv)` on the command line's arguments: progress as log
    lines, a PipelineError as one clear line, exit 1; Ctrl-C or SIGTERM as one line too, exit
    130 or 143."""
    setup()
    settle()
    try:
        main(sys.argv[1:])
    except PipelineError as err:
        log.error("error: %s", err)
        sys.exit(1)
    except (KeyboardInterrupt, Stopped) as err:
        by, status = stops.stopped_by(err)
        log.error("stopped by %s: %s", by, stops.STOPPED_NOTE)
        sys.exit(status)
    finally:
        skip_final_gc()


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`, its docstring's first paragraph as its help. A
    stage takes no arguments (its config is params.yaml): its parser gives `--help` and
    refuses anything else."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """Stop a child started in a session of its own (`start_new_session=True`) and its group
    (a server and its workers): SIGTERM, then SIGKILL if it is still there after `grace`
    seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


def settle() -> None:
    """Once a process has imported what it runs with (Keras, JAX, MLflow: half a million
    objects that live as long as it does), the garbage collector stops scanning them: each of
    its full passes over them cost tenths of a second wherever it fell (a job's key, opening
    the store, logging the model). Once a process, at its first call: what is made after it,
    a sweep's jobs included, is collected as ever (docs/performance.md)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def skip_final_gc() -> None:
    """Spare the garbage collector's last pass over TensorFlow's objects: without it, a
    process that imported TensorFlow takes over a second longer to exit. Files are closed and
    atexit handlers run as usual."""
    gc.freeze()
