"""Atomic writes: a killed stage never leaves a half-written output where DVC looks."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import PipelineError


class WriteError(PipelineError):
    """An output could not be written (disk full, a read-only folder, a file size limit)."""


@contextmanager
def replacing(path: Path, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success, else delete it.

    `suffix` keeps writers that insist on an extension (`.keras`, `.npy`) happy. The file gets
    `mode`, or what a plain open() would give it. If writing fails (the disk is full, the
    folder read-only), `path` is left as it was.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(path)
        tmp = _create(
            path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}", mode
        )
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        kept = "the previous one is kept" if path.exists() else "nothing was written"
        raise WriteError(
            f"cannot write {path} ({err.strerror or err}); {kept}. Free some "
            f"disk space or make {path.parent} writable, then rerun"
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _create(tmp: Path, mode: int | None) -> Path:
    """Create `tmp`, new, with `mode` exactly, or what a plain open() would give it (0666
    less the umask, which the kernel applies without our reading it)."""
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 if mode is None else mode))
    if mode is not None:
        os.chmod(tmp, mode)  # the umask may have taken bits that were asked for
    return tmp


def remove_orphans(path: Path) -> None:
    """Delete the temporary files of earlier writers of `path` that died mid-write (SIGKILL,
    a crash), found by the process id in their names."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = tmp.name[len(path.name) + 2 :].partition(".")[0]
        if pid.isdigit() and not alive(int(pid)):
            tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs: not a zombie, which has exited and
    waits to be reaped (in a container whose init reaps nothing, for ever)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc to ask, or it exited meanwhile
        return True
    return state not in ("Z", "X")


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    with replacing(path, mode=mode) as tmp:
        tmp.write_text(text)


def copy(source: Path, path: Path) -> None:
    """`source`'s bytes to `path`, atomically."""
    with replacing(path) as tmp:
        shutil.copyfile(source, tmp)
