"""The speed and memory benchmark: the pipeline against the notebook it replaces, side by side.

    python -m bench [--reps 3] [--output bench/results.json]

Runs on real MNIST (MNIST_SOURCE, else the Keras cache or the canonical URL, as the download
stage does) in a throwaway git + DVC copy of this project, so the workspace and its MLflow
store are never touched. Figures are medians over `--reps` repetitions, taken interleaved,
and compared as ratios measured in the same run (this machine is shared and noisy). Prints a
table and writes `bench/results.json` and `bench/RESULTS.md`, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import costs, measure
from bench.floor import compute_floor
from bench.harness import Project, machine
from bench.report import write
from bench.sandbox import ROOT


def main() -> None:
    """Measure in a throwaway copy of the project; write results.json and RESULTS.md."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the sweep measured")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        print("preparing a copy of the project and its data ...", file=sys.stderr)  # noqa: T201
        project = Project(Path(folder))
        results = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "reps": args.reps,
            "machine": machine(),
        }
        results["training"] = measure.training_speed(project, args.reps)
        results["floor"] = compute_floor()
        results["pipeline"] = measure.pipeline_overhead(project, args.reps)
        results["memory"] = measure.memory(project)
        results["sweep"] = measure.sweep_overhead(project, args.jobs)
        results["replicates"] = measure.replicates(project)
        results["reproduce"] = measure.reproduction(project, args.reps)
        results["checkpoints"] = measure.checkpoints(project)
        results["reuse"] = measure.reuse(project)  # after checkpoints(): its grid again
        results["costs"] = costs.measured(project)
    if args.output.exists():  # measured apart, kept: `python -m bench.search`'s figures, and
        # the fixed costs before issue 37's work (bench.costs on that commit)
        kept = ("search", "costs_before")
        results |= {k: v for k, v in json.loads(args.output.read_text()).items() if k in kept}
    write(results, args.output)


if __name__ == "__main__":
    main()
