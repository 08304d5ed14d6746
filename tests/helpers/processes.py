"""Processes the tests start: waiting on them, stopping them, and what they listen on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def kill_where(started_here: Callable[[Path], bool]) -> None:
    """SIGKILL every process whose /proc entry `started_here` picks (Linux); one that ends
    meanwhile, or is not ours to read, is passed over."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if started_here(proc):
                    os.kill(int(proc.name), signal.SIGKILL)


def stop_processes_in(folder: Path) -> None:
    """Kill every process still running in `folder`: DVC's queue workers can outlive the
    test that started them, and even `dvc queue stop`."""

    def inside(proc: Path) -> bool:
        cwd = (proc / "cwd").resolve(strict=True)
        return cwd == folder or folder in cwd.parents

    kill_where(inside)


# Sets Ctrl-C's default disposition, then becomes the command (exec keeps it).
_DEFAULT_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def with_ctrl_c(command: list[str]) -> list[str]:
    """`command`, started with Ctrl-C's default disposition whatever the test runner's (a
    shell's `cmd &` starts it with SIGINT ignored, which its children inherit, and which the
    pipeline's commands keep, as Python does). Through a small exec, not a `preexec_fn`:
    Python code between fork and exec can deadlock in a test process where JAX's threads
    run (a sweep once never started, in CI)."""
    return [sys.executable, "-I", "-S", "-c", _DEFAULT_CTRL_C, *map(str, command)]


def in_a_terminal(command: list[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen` of a command as a terminal runs it: in its own process group, for
    `ctrl_c` to signal as the terminal does, with Ctrl-C's default disposition."""
    return subprocess.Popen(with_ctrl_c(command), **kwargs, process_group=0)


def ctrl_c(process: subprocess.Popen) -> None:
    """What a terminal sends on Ctrl-C: SIGINT to the foreground process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, where every server a test starts listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str, timeout: float = 5) -> bool:
    """Whether an HTTP server answers at `url` (any status but an error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, what: str, timeout: float = 120.0, every: float = 0.2):
    """Poll `predicate` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
