"""Where and on what the benchmark runs: a throwaway git + DVC copy of this project, each
command in it timed with its own peak memory, and the machine and package versions."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from mlflow import MlflowClient

from bench.sandbox import ROOT, copy_project
from pipeline.common import provenance

NOTEBOOK = ROOT / "bench" / "notebook.py"
TRAIN_STEP = ROOT / "bench" / "train_step.py"
TORCH = ROOT / "bench" / "torch_notebook.py"
CACHE_OFF = "checkpoints.enabled=false"
FRESH = "reuse=false"  # every job trained, none reused from an earlier run (`reuse()` measures)
REPRO = ("dvc", "repro", "-s", "-f", "train", "evaluate")

# Started from a fresh, small interpreter: a child forked from this process would count this
# process's memory (TensorFlow included) in its own peak.
_PEAK = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
    "_, status, usage = os.wait4(p.pid, 0); print(f'PEAK_KIB {usage.ru_maxrss}'); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak resident MiB (of that process alone) and output of a command."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-S", "-c", _PEAK, *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wall = time.perf_counter() - started
    output, _, peak = done.stdout.rpartition("PEAK_KIB ")
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output[-3000:]}")
    return wall, int(peak) / 1024, output


class Project:
    """A throwaway git + DVC copy of this project, with its data prepared, and the checkpoint
    cache and job reuse off (`checkpoints()` and `reuse()` measure them; each sweep passes
    FRESH too): every timed training trains all its epochs."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "project"
        self.env = copy_project(self.path, skip=("tests/",))
        self.python("-m", "pipeline.config", CACHE_OFF, FRESH)
        self.run("dvc", "repro")

    def run(self, *command: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
        return timed(list(command), self.path, self.env | (env or {}))

    def python(self, *args: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
        return self.run(sys.executable, *args, env=env)

    def epoch_seconds(self, run_id: str) -> float:
        """The seconds a run spent in its epochs (MLflow holds each epoch's wall time)."""
        client = MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")
        return sum(point.value for point in client.get_metric_history(run_id, "epoch_time_s"))


def median(values: list[float]) -> float:
    """The median as a plain float, as results.json stores it."""
    return float(statistics.median(values))


def machine() -> dict:
    """The CPU, cores, memory, Python and package versions the figures were measured on."""
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": provenance.cpu()[0],
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            name: metadata.version(name)
            for name in ("jax", "tensorflow", "keras", "mlflow", "dvc", "hydra-core", "numpy")
        },
    }
