"""Where the seconds beside the epochs go: the train and evaluate stages' fixed costs and a
sweep job's, timed in the process that pays them.

    python -m bench.costs train       # in a project copy: `python -m pipeline.train`
    python -m bench.costs evaluate    # ... then `python -m pipeline.evaluate`
    python -m bench.costs sweep       # ... a sweep of two 1-epoch jobs

Runs the command in this process with its phases wrapped in wall-clock timers (no profiler:
its overhead would distort the Python-heavy phases it is asked to find). A phase's time is
its own, less the phases inside it; `other` is what no phase holds. Prints one JSON line: the
imports, the whole process, for `train` the seconds from its start to its first training
step, and the phases: a stage's, or for `sweep` each job's (the first compiles, the second
is a steady job's) after the sweep's own.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from typing import Any  # noqa: E402

# What a process imports, in the order a stage pays it, each beyond those before it: these,
# then the command's own module, and no other (the evaluate stage's statistics are not the
# train stage's to pay).
IMPORTS = ("pipeline.common.entry", "keras", "mlflow")
# command: (its own module, the `python -m` arguments that run it)
COMMANDS = {
    "train": ("pipeline.train", ["pipeline.train"]),
    "evaluate": ("pipeline.evaluate", ["pipeline.evaluate"]),
    "sweep": (
        "pipeline.sweep.runner",
        ["pipeline.sweep", "-m", "train.seed=1,2", "train.epochs=1"],
    ),
}

JOB = "a sweep's job: what no phase below holds"  # its own time is counted as "other"
FIT = "fit: the epochs, validation, the sample's measure"
# phase: (module, attribute, the class in it or None)
PHASES = {
    JOB: ("pipeline.sweep.runner", "_job", None),
    "config: loaded": ("pipeline.config", "load", None),
    "config: validate": ("pipeline.config", "validate", None),
    "config: the job's key": ("pipeline.config.jobs", "key", None),
    "MLflow: store opened": ("pipeline.tracking.store", "_client", None),
    "MLflow: run opened": ("pipeline.tracking.runs", "_open", None),
    "data: loaded": ("pipeline.preprocess", "load_split", None),
    "MLflow: config logged": ("pipeline.tracking.record", "configuration", None),
    "environment facts": ("pipeline.common.provenance", "environment", None),
    "MLflow: data described": ("pipeline.tracking.record", "data", None),
    "model: built and compiled": ("pipeline.training.model", "build", None),
    "model: loaded": ("pipeline.training.model", "load", None),
    "MLflow: the run that trained it found": ("pipeline.tracking.runs", "find", None),
    FIT: ("pipeline.training.loop", "fit", None),
    "model: saved": ("pipeline.training.model", "save", None),
    "MLflow: model logged": ("pipeline.tracking.registry", "log_model", None),
    "evaluate: test digits predicted, reports written": ("pipeline.evaluate", "run", None),
    "evaluate: training digits predicted": ("pipeline.evaluate", "trained_accuracy", None),
    "MLflow: metrics logged": ("pipeline.tracking.record", "metrics", None),
    "sweep: opened": ("pipeline.sweep.runner", "_open", None),
    "sweep: report and registration": ("pipeline.sweep.runner", "_close", None),
}
STAGE_START = 1.5  # issue 37: a stage's own start (imports, store, compile), seconds


class Clock:
    """Each phase's own seconds, per job (0 before the first), and when the first step began."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, float]] = [defaultdict(float)]
        self._inside: list[float] = []  # the seconds of the phases nested in each open phase
        self.first_step: float | None = None

    def wrap(self, phase: str, func: Any) -> Any:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if phase == JOB:
                self.jobs.append(defaultdict(float))
            if phase == FIT and self.first_step is None:
                self.first_step = time.perf_counter() - STARTED
            started = time.perf_counter()
            self._inside.append(0.0)
            try:
                return func(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                nested = self._inside.pop()
                self.jobs[-1][phase if phase != JOB else "other"] += took - nested
                if self._inside:
                    self._inside[-1] += took

        return timed


def main() -> None:
    command = sys.argv[1]
    own, argv = COMMANDS[command]
    imports = {}
    for name in (*IMPORTS, own):
        started = time.perf_counter()
        imported = importlib.import_module(name)
        if name == "pipeline.common.entry":
            imported.environment()  # the Keras backend and MLflow's settings, as a stage's
        imports[name] = time.perf_counter() - started
    clock = Clock()
    for phase, (name, attribute, owner) in PHASES.items():
        if name not in sys.modules and command != "sweep":  # the sweep's jobs import them all
            continue  # a module this command never imports (its import is not its cost)
        holder = importlib.import_module(name)
        holder = getattr(holder, owner) if owner else holder
        setattr(holder, attribute, clock.wrap(phase, getattr(holder, attribute)))
    sys.argv = [argv[0], *argv[1:], *sys.argv[2:]]
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code:
            raise
    figures = {
        "imports_s": imports,
        "process_s": time.perf_counter() - STARTED,
        "first_step_s": clock.first_step,
        "phases_s": [dict(job) for job in clock.jobs],
    }
    print(json.dumps(figures))  # noqa: T201


def measured(project: Any) -> dict:
    """This module run in `project` (a `bench.harness.Project`): the train stage, the evaluate
    stage, then a sweep of two 1-epoch jobs, each training afresh."""
    from bench.harness import CACHE_OFF, FRESH

    return {
        command: json.loads(
            project.python("-m", "bench.costs", command, *extra)[2].splitlines()[-1]
        )
        for command, extra in (("train", []), ("evaluate", []), ("sweep", [CACHE_OFF, FRESH]))
    }


def cost_targets(costs: dict | None) -> list[tuple[str, str, str, bool]]:
    """Issue 37's target for a stage's own start: the train stage's first step."""
    if not costs:
        return []
    start = costs["train"]["first_step_s"]
    return [
        (
            "train stage: process start to its first step (imports, store, compile)",
            f"{start:.1f} s",
            f"<= {STAGE_START} s",
            start <= STAGE_START,
        )
    ]


def _rows(figures: dict) -> dict[str, float]:
    """A run of this module's figures as named rows: imports, the stages' phases, the steady
    sweep job's (the second: the first compiles); not the epochs."""
    imports = figures["train"]["imports_s"]
    rows = {
        "import keras (JAX)": imports["keras"],
        "import mlflow, beyond keras": imports["mlflow"],
        "the train stage's modules, beyond both": imports["pipeline.train"],
        "train stage: process start to its first step": figures["train"]["first_step_s"],
    }
    for stage in ("train", "evaluate"):
        (phases,) = figures[stage]["phases_s"]
        rows |= {f"{stage} stage: {k}": v for k, v in phases.items()}
    rows["evaluate stage: the whole process"] = figures["evaluate"]["process_s"]
    job = figures["sweep"]["phases_s"][2]  # and the sweep's end, which follows it
    rows |= {k if k.startswith("sweep:") else f"sweep job: {k}": v for k, v in job.items()}
    return {name: value for name, value in rows.items() if not name.endswith(FIT)}


def cost_table(costs: dict | None, before: dict | None) -> list[str]:
    """Where the seconds beside the epochs go, now and before issue 37's work (kept in
    results.json under costs_before, measured by this module on that commit)."""
    if not costs:
        return []
    now, then = _rows(costs), _rows(before) if before else {}
    said = f"before ({before['commit']}, {before['date']})" if before else "before"
    lines = ["", f"| where the seconds beside the epochs go (s) | {said} | now |", "|---|---|---|"]
    for name in dict.fromkeys([*now, *then]):  # now's order, then what only before had
        old = f"{then[name]:.2f}" if name in then else "-"
        new = f"{now[name]:.2f}" if name in now else "-"
        lines.append(f"| {name} | {old} | {new} |")
    return lines


if __name__ == "__main__":
    main()
