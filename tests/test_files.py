"""pipeline/common/files.py: atomic writes. A write that fails, or a writer that is killed, leaves
the previous output as it was and no half-written file where DVC looks; the temporary files of
a killed writer are removed by the next write. Through the stages that write, as DVC runs them.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import preprocess
from pipeline.common import files

from .helpers.data import make_arrays, write_raw_project
from .helpers.processes import dead_pid
from .helpers.stage import Stage


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.keras"
    orphan = tmp_path / f".model.keras.{dead_pid()}.abc123.keras"
    ours = tmp_path / f".model.keras.{os.getpid()}.def456.keras"  # a write in progress
    other = tmp_path / f".metrics.json.{dead_pid()}.abc123.tmp"  # another file's
    for path in (orphan, ours, other):
        path.write_text("half")

    files.write_text(target, "whole")

    assert target.read_text() == "whole"
    assert not orphan.exists() and ours.exists() and other.exists()


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ

    return apply


def test_a_write_that_fails_keeps_the_previous_outputs_and_says_why(tmp_path):
    stage = Stage(tmp_path)
    raw = tmp_path / "data" / "raw" / "mnist.npz"
    raw.parent.mkdir(parents=True)
    np.savez(raw, **make_arrays(seed=0))
    assert stage.run("preprocess").returncode == 0
    prepared = tmp_path / "data" / "prepared"
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    np.savez(raw, **make_arrays(seed=1))  # new data that will not fit

    done = stage.run("preprocess", preexec_fn=_file_size_limit(4096))

    assert done.returncode == 1
    assert "error: cannot write data/prepared/x_train.npy (" in done.stderr
    assert (
        "the previous one is kept. Free some disk space or make data/prepared writable, then rerun"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    assert stage.leftovers() == []


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with the real composed params.yaml and a synthetic raw npz."""
    folder = write_raw_project(tmp_path / "project")
    monkeypatch.chdir(folder)
    return folder


def test_main_interrupted_mid_write_leaves_no_temp_file(project, monkeypatch):
    real_save = np.save
    saved: list[str] = []

    def save_then_fill_the_disk(file, array, **kwargs):
        if saved:  # the second file: half written, then the disk is full
            Path(file).write_bytes(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(str(file))
        real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", save_then_fill_the_disk)

    with pytest.raises(
        files.WriteError,
        match=r"y_train.npy \(No space left on device\); "
        "nothing was written",
    ):
        preprocess.main([])

    assert os.listdir(project / "data" / "prepared") == ["x_train.npy"]


def test_a_process_that_has_exited_is_not_alive_even_before_it_is_reaped():
    """A zombie (exited, not yet waited for) still answers kill(pid, 0); it is dead all the
    same: a run it left open is KILLED, a postmaster in that state is restarted."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert files.alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while files.alive(child.pid) and time.monotonic() < deadline:  # not waited for
            time.sleep(0.05)
        assert not files.alive(child.pid)
        assert Path(f"/proc/{child.pid}").exists()  # a zombie: not yet reaped
    finally:
        child.kill()
        child.wait()
    assert not files.alive(child.pid)
