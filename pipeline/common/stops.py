"""Ctrl-C and SIGTERM, stopping a process cleanly: both unwind every `with` block (temporary
files removed, an open MLflow run marked KILLED); around a training loop they wait for a safe
point, which a Keras callback offers after each call into the backend."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline import Stopped

STOPPED_NOTE = (
    "nothing half-written was kept, and an MLflow run it had open is KILLED; "
    "rerun it (a stage: `dvc repro`)"
)

_deferring: list[bool] = []  # inside `deferred()`
_pending: list[BaseException] = []  # what arrived meanwhile
# A store's database connections in use (`hold`): a stop raised inside one of its transactions
# leaves SQLite locked for the run's own end. It is sent again every HOLD_STEP seconds until
# they are back, HOLD_TRIES times at most (a connection never given back delays it 2 s).
_held: set[int] = set()
_waits: list[int] = []
HOLD_STEP, HOLD_TRIES = 0.05, 40


def stopped_by(err: KeyboardInterrupt | Stopped) -> tuple[str, int]:
    """What stopped the process, as the user knows it, and its exit status (128 + signal)."""
    return ("Ctrl-C", 130) if isinstance(err, KeyboardInterrupt) else ("SIGTERM", 143)


def _stop(signum: int, frame: object) -> None:
    err = (
        KeyboardInterrupt()
        if signum == signal.SIGINT
        else Stopped(f"signal {signal.Signals(signum).name}")
    )
    if _deferring:
        _pending.append(err)
        return
    if _held and len(_waits) < HOLD_TRIES:
        _waits.append(signum)
        threading.Timer(HOLD_STEP, os.kill, (os.getpid(), signum)).start()
        return
    _waits.clear()
    raise err


def hold(connection: object, *_: object) -> None:
    """A store's database connection is in use: a stop waits until it is back (`release`).
    SQLAlchemy's pool calls both (`tracking.store`)."""
    _held.add(id(connection))


def release(connection: object, *_: object) -> None:
    _held.discard(id(connection))


def _ours(signum: int) -> bool:
    """Whether this process answers `signum`: not if it started with it ignored (a shell's
    `cmd &` ignores Ctrl-C for its background jobs), as Python itself leaves it."""
    return signal.getsignal(signum) is not signal.SIG_IGN


def handle() -> None:
    """SIGTERM raises `Stopped` (Python's default would end the process on the spot), Ctrl-C
    `KeyboardInterrupt` as usual; inside `deferred()`, both wait for a safe point. A signal the
    process started with ignored stays ignored, at every moment of its life."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        if _ours(signum):
            signal.signal(signum, _stop)
    if not isinstance(sys.unraisablehook, _Redeliver):
        sys.unraisablehook = _Redeliver(sys.unraisablehook)


class _Redeliver:
    """A stop raised where Python ignores exceptions, and would lose it: in a garbage
    collector's callback (JAX has one) or a `__del__`. The signal is sent again, to be raised
    a moment later, where the code is ours again."""

    def __init__(self, hook: object) -> None:
        self.hook = hook

    def __call__(self, unraisable: object) -> None:
        err = getattr(unraisable, "exc_value", None)
        if isinstance(err, KeyboardInterrupt | Stopped):
            signum = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
            threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
            return
        self.hook(unraisable)  # type: ignore[operator]


def starting(command: str) -> None:
    """From a command's first line until `handle()`: while its modules import there is
    nothing to unwind, and an exception raised inside an import leaves that module half made
    for whoever imports it next; so Ctrl-C or SIGTERM there ends the process at once, with
    one line."""

    def exit_now(signum: int, frame: object) -> None:
        by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        line = f"{time.strftime('%H:%M:%S')} {command}: stopped by {by} while starting: "
        os.write(2, (line + "nothing ran\n").encode())
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        if _ours(signum):
            signal.signal(signum, exit_now)


@contextmanager
def deferred() -> Iterator[None]:
    """Around a backend's training loop: an exception raised at an arbitrary point inside it
    can be lost (TensorFlow turns it into a RuntimeError about device scopes), so a stop
    waits for the next `check()`, which a Keras callback calls after each call into the
    backend, and is raised at the latest on the way out."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    check()


def check() -> None:
    """Raise a stop that arrived while deferred."""
    if _pending:
        raise _pending.pop()
