"""What a result is a function of, beyond its config and data: the code (git commit, and the
uncommitted changes as a diff), the environment that decides the numbers, and a digest of
the weights it produced. No MLflow here: `tracking.record` logs these, and `reproduce`
compares them."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from subprocess import PIPE

import numpy as np

from pipeline.common import entry

# What defines a run besides params.yaml; dvc.lock, params.yaml and the stage outputs change
# on every run, so they would make every run look dirty.
SOURCE_PATHS = ("pipeline", "conf", "dvc.yaml", "pyproject.toml", "constraints.txt")
PACKAGES = ("numpy", "tensorflow", "keras")
# The variables that set how a backend computes: TensorFlow's and OpenMP's threads, XLA's flags.
VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")
# The instruction sets that pick TensorFlow's and oneDNN's kernels, so can change the numbers.
ISA = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
    "amx_bf16", "amx_int8",
)  # fmt: skip


def weights_digest(weights: Iterable[np.ndarray]) -> str:
    """sha256 over the tensors (dtype, shape and values, in order): the same for the same
    numbers however the file holding them was written. Pass `model.get_weights()`."""
    digest = hashlib.sha256()
    for tensor in weights:
        array = np.ascontiguousarray(tensor)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cpu() -> tuple[str, str]:
    """The CPU's model name and which of `ISA` it has (Linux; elsewhere what Python knows)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown", "unknown"
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown"), " ".join(f for f in ISA if f in flags)


def _onednn() -> str:
    """TensorFlow's oneDNN kernels: on by default on x86-64 Linux, off with
    TF_ENABLE_ONEDNN_OPTS=0."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    if value in ("0", "false"):
        return "off"
    if value in ("1", "true") or platform.machine() in ("x86_64", "AMD64"):
        return "on"
    return "default"


def environment() -> dict[str, str]:
    """The facts of this process that decide the numbers a training gives. Keras reads its
    backend from KERAS_BACKEND, which importing `pipeline` sets before Keras loads: asked here
    without loading Keras (seconds), for a job's key before deciding to train."""
    backend = os.environ["KERAS_BACKEND"]
    facts = {"python": platform.python_version(), "keras_backend": backend}
    facts |= _versions(backend)
    model_name, isa = _cpu()
    facts |= {
        "machine": platform.machine(),
        "cpu": model_name,
        "cpu_isa": isa,
        "onednn": _onednn(),
    }
    facts["cpus"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0)
    facts |= {name.lower(): os.environ.get(name, "default") for name in VARIABLES}
    return facts


@functools.cache
def _versions(backend: str) -> dict[str, str]:
    """The packages' versions, read once a process (a sweep asks for every job)."""
    found = {name: metadata.version(name) for name in PACKAGES}
    return found | ({backend: metadata.version(backend)} if backend != "tensorflow" else {})


_cpu = functools.cache(cpu)  # the CPU does not change while a process runs


def differences(recorded: Mapping[str, str], here: Mapping[str, str]) -> list[str]:
    """Each fact that differs, as `name: recorded -> here`."""
    return [
        f"{name}: {recorded.get(name, 'unrecorded')} -> {here.get(name, 'unrecorded')}"
        for name in sorted(recorded.keys() | here.keys())
        if recorded.get(name) != here.get(name)
    ]


def git(
    *args: str,
    cwd: Path | None = None,
    ok: tuple[int, ...] = (0,),
    timeout: float = 30,
    errors: Callable[[str], Exception] | None = None,
) -> str | None:
    """`git ARGS` in `cwd`: its output. Where git is missing, times out or exits outside `ok`:
    None, or given `errors`, the exception it makes of the reason (git's own message). Git
    runs in a process group of its own, killed whole when this call is left early (a timeout,
    Ctrl-C, SIGTERM): `git worktree add` checks the files out in a child process, which would
    otherwise go on writing after git itself was killed."""
    try:
        with subprocess.Popen(
            ["git", *args], cwd=cwd, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True
        ) as running:
            try:
                out, err = running.communicate(timeout=timeout)
            except BaseException:
                entry.stop_group(running, grace=0)
                raise
    except (OSError, subprocess.SubprocessError) as error:
        reason = str(error)
    else:
        if running.returncode in ok:
            return out
        reason = err.strip()
    if errors is None:
        return None
    raise errors(f"git {' '.join(args)} failed: {reason}")


def commit(cwd: Path | None = None) -> str | None:
    """The checked-out commit, or None outside a git repo."""
    head = git("rev-parse", "HEAD", cwd=cwd)
    return head.strip() if head else None


def source_diff(cwd: Path | None = None) -> str:
    """The uncommitted changes to the source (`SOURCE_PATHS`), new files included, as one
    patch that `git apply` replays on the commit: empty when the source is clean."""
    patch = git("diff", "HEAD", "--binary", "--", *SOURCE_PATHS, cwd=cwd) or ""
    untracked = git(
        "ls-files", "--others", "--exclude-standard", "-z", "--", *SOURCE_PATHS, cwd=cwd
    )
    for name in filter(None, (untracked or "").split("\0")):
        # `git diff --no-index` exits 1 when the files differ, as a new file always does.
        patch += (
            git("diff", "--no-index", "--binary", "--", "/dev/null", name, cwd=cwd, ok=(1,)) or ""
        )
    return patch
