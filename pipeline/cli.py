"""The one way a stage's entry point reports progress and errors to a person."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Callable

from pipeline import PipelineError, Stopped

log = logging.getLogger("pipeline")


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(): progress as log lines, a PipelineError as one clear line, exit 1;
    Ctrl-C or SIGTERM as one line too, exit 130 or 143."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    stop_on_sigterm()
    try:
        main()
    except PipelineError as err:
        log.error("error: %s", err)
        sys.exit(1)
    except (KeyboardInterrupt, Stopped) as err:
        log.error("stopped by %s: %s", "Ctrl-C" if isinstance(err, KeyboardInterrupt) else
                  "SIGTERM", STOPPED_NOTE)
        sys.exit(130 if isinstance(err, KeyboardInterrupt) else 143)
    finally:
        quick_exit()


STOPPED_NOTE = ("nothing half-written was kept, the MLflow run is KILLED, and the next "
                "`dvc repro` redoes this stage")


def _stop(signum: int, frame: object) -> None:
    raise Stopped(f"signal {signal.Signals(signum).name}")


def stop_on_sigterm() -> None:
    """SIGTERM raises `Stopped` (Python's default would end the process on the spot)."""
    signal.signal(signal.SIGTERM, _stop)


def quick_exit() -> None:
    """Spare the garbage collector's last pass over TensorFlow's objects: without it, a
    process that imported TensorFlow takes 1.3 s longer to exit. Files are closed and atexit
    handlers run as usual."""
    gc.freeze()
