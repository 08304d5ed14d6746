"""What a person sees from an entry point: one line per error, an exit status per kind of
stop, and the environment defaults that the user's own settings override."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pipeline.common import entry

from .helpers import ROOT
from .helpers.processes import with_ctrl_c


def _entry(body: str) -> subprocess.Popen:
    """A process whose entry point is `entry.run` around `body` (the lines of a main())."""
    code = "import os, time\nfrom pipeline import PipelineError\n"
    code += "from pipeline.common import entry\n"
    code += "def main(argv):\n"
    code += "".join(f"    {line}\n" for line in body.splitlines())
    code += "entry.run(main)\n"
    return subprocess.Popen(
        with_ctrl_c([sys.executable, "-c", code]),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_pipeline_error_is_one_line_and_exit_status_1():
    done = _entry("raise PipelineError('train.epochs must be >= 1; set train.epochs=5')")
    out, err = done.communicate(timeout=60)
    assert done.returncode == 1
    assert "error: train.epochs must be >= 1; set train.epochs=5" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("sig", "by", "code"), [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)]
)
def test_a_stop_is_one_line_naming_it_and_128_plus_the_signal(sig, by, code):
    running = _entry("print('started', flush=True)\ntime.sleep(60)")
    assert running.stdout.readline() == "started\n"
    running.send_signal(sig)
    _, err = running.communicate(timeout=60)
    assert running.returncode == code
    assert f"stopped by {by}: nothing half-written was kept" in err
    assert "Traceback" not in err


def test_a_stop_waits_for_a_store_connection_in_use_then_stops():
    """Cut inside a store's transaction, SQLite stays locked for the run's own end."""
    body = "from pipeline.common import stops\nconnection = object()\nstops.hold(connection)\n"
    body += "print('held', flush=True)\nstarted = time.monotonic()\n"
    body += "while time.monotonic() - started < 1: pass\n"
    body += "print('given back', flush=True)\nstops.release(connection)\ntime.sleep(60)"
    running = _entry(body)
    assert running.stdout.readline() == "held\n"
    running.send_signal(signal.SIGINT)
    out, err = running.communicate(timeout=30)
    assert (running.returncode, out) == (130, "given back\n"), err
    assert "stopped by Ctrl-C" in err and "Traceback" not in err


def test_environment_defaults_yield_to_what_the_user_set(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    entry.environment()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        == entry.ENVIRONMENT["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    )


def test_stop_group_kills_a_child_that_ignores_sigterm_after_the_grace():
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1)\n"
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", ignores + "time.sleep(60)"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout and child.stdout.readline() == b"1\n"  # it ignores SIGTERM from now
    entry.stop_group(child, grace=1)
    assert child.returncode == -signal.SIGKILL


def test_a_stage_takes_no_arguments_but_help():
    """Every command follows one convention (`main(argv)`, `entry.run(main)`): a stage's
    config is params.yaml, so it explains itself on --help and refuses anything else."""

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.download", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    helped = command("--help")
    assert helped.returncode == 0 and "usage: python -m pipeline.download" in helped.stdout
    assert "Stage 1" in helped.stdout
    refused = command("data.url=x")
    assert refused.returncode == 2 and "unrecognized arguments: data.url=x" in refused.stderr


def test_a_process_settles_once_and_still_collects_what_its_jobs_make():
    """A stage or a sweep's first job settles (the collector stops scanning what the imports
    made); a sweep's later jobs settle nothing more, and what each job leaves is collected: a
    search of 50 jobs does not keep them all."""
    script = (
        "import gc, weakref\n"
        "from pipeline.common import entry\n"
        "entry.settle()\n"
        "frozen = gc.get_freeze_count()\n"
        "class Model: pass\n"
        "job = Model(); job.itself = job; left = weakref.ref(job); del job\n"
        "entry.settle()\n"
        "gc.collect()\n"
        "print(frozen > 0, gc.get_freeze_count() == frozen, left() is None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]
