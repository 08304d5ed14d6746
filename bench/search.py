"""The search's figures, apart from the speed benchmark (the quality search alone takes an
hour): what it costs against a grid, and what the documented search found.

    python -m bench.search                      # cost: in a throwaway copy (minutes)
    python -m bench.search --quality FOLDER     # and the quality figures of the search
                                                # `python -m pipeline.search search=mlp` ran
                                                # with hydra.sweep.dir=FOLDER, in this project

Cost, on real MNIST: a 3 x 3 space (learning rate x dropout) as a grid, 3 seeds each at 9
epochs, and as a search (9 trials, rungs of 1, 3 and 9 epochs, 3 contenders racing on up to
3 seeds); whether the search's winner is in the grid's best set, and its epochs against the
grid's (through the checkpoint cache: a job goes on from its configuration and seed's
longest); what a promotion and a trial cost beyond their epochs. Quality: the search's wall
time, its winner's test accuracy over its seeds against the default's (the search's own
jobs) and `make sweep`'s best cell's (epochs 20, batch 64, 3 seeds: trained here, or reused),
each with Welch's test. Writes `search` into bench/results.json and RESULTS.md again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from bench.harness import Project, median
from bench.report import write
from bench.sandbox import ROOT
from pipeline.search.driver import Outcome
from pipeline.sweep import findings
from pipeline.sweep import report as sweep_report
from pipeline.tracking import store

# A space with real differences: 9 epochs at 1e-4 learn too little, at 1e-2 too wildly.
SPACE = ("train.learning_rate=choice(0.0001, 0.001, 0.01)", "model.dropout=choice(0.0, 0.2, 0.4)")
GRID = ("train.learning_rate=0.0001,0.001,0.01", "model.dropout=0.0,0.2,0.4")
SEEDS, TOP = 3, 9
SWEEP_BEST = ("train.epochs=20", "train.batch_size=64")  # `make sweep`'s best cell, 2026-12-07


def _chains(outcome: Outcome) -> int:
    """The epochs a search trained: each trial and seed's longest job (the cache serves the
    shorter ones), the default's seeds left out (the grid has none)."""
    longest: dict[tuple, int] = {}
    for trial in outcome.trials:
        chain = tuple(sorted(trial.params.items()))
        for key in trial.runs:
            epochs, seed = map(int, key.split("/"))
            longest[(chain, seed)] = max(longest.get((chain, seed), 0), epochs)
    return sum(longest.values())


def _grid_best(folder: Path) -> set[tuple[float, float]]:
    """The grid's best set, (learning rate, dropout) each, as its sweep report finds it."""
    rows = pd.read_csv(folder / sweep_report.CSV)
    best = findings.best(rows, findings.keys(rows, sweep_report.METRICS))
    assert best is not None, "the grid finished no job"
    table = pd.read_csv(folder / sweep_report.CONFIGURATIONS)
    chosen = table[table[findings.CONFIGURATION].isin([best.label, *best.tied])]
    return {(float(r["learning_rate"]), float(r["dropout"])) for _, r in chosen.iterrows()}


def _beyond_epochs(client: MlflowClient, run_ids: list[str]) -> list[float]:
    """Each run's wall time (MLflow start to end) beyond the seconds of its epochs."""
    found = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        epochs = sum(p.value for p in client.get_metric_history(run_id, "epoch_time_s"))
        found.append((run.info.end_time - run.info.start_time) / 1000 - epochs)
    return found


def cost(project: Project) -> dict:
    grid_s = project.python(
        "-m", "pipeline.sweep", "-m", *GRID, f"train.epochs={TOP}", f"replicates={SEEDS}",
        "hydra.sweep.dir=multirun/search-grid", "checkpoints.dir=.checkpoints-grid",
    )[0]  # fmt: skip
    folder = project.path / "multirun/search-cost"
    settings = [f"hydra.sweeper.{k}={v}" for k, v in (("trials", 9), ("max_epochs", TOP))]
    search_s = project.python(
        "-m", "pipeline.search", *SPACE, *settings, f"hydra.sweeper.seeds={SEEDS}",
        "tracking.experiment=search-cost", "checkpoints.dir=.checkpoints-search",
        f"hydra.sweep.dir={folder}",
    )[0]  # fmt: skip
    outcome = Outcome.read(folder)
    winner = outcome.winner()
    assert winner is not None, "the search named no winner"
    found = (float(winner.params["train.learning_rate"]), float(winner.params["model.dropout"]))
    client = MlflowClient(f"sqlite:///{project.path / 'mlflow.db'}")
    first = [r for t in outcome.trials for k, r in t.runs.items() if k.startswith("1/")]
    promoted = [r for t in outcome.trials for k, r in t.runs.items() if k.startswith("3/")]
    jobs = [r for t in outcome.trials for r in t.runs.values()] + list(outcome.baseline.values())
    run_ids = list(dict.fromkeys(jobs))  # a trial proposed twice reuses its jobs
    epochs_s = sum(p.value for r in run_ids for p in client.get_metric_history(r, "epoch_time_s"))
    return {
        "grid_s": grid_s,
        "grid_epochs": 9 * SEEDS * TOP,
        "grid_best": sorted(map(list, _grid_best(project.path / "multirun/search-grid"))),
        "search_s": search_s,
        "search_epochs": _chains(outcome),
        "search_winner": list(found),
        "search_trials": len(outcome.trials),
        "search_jobs": len(run_ids),
        "promotion_beyond_first_s": median(_beyond_epochs(client, promoted))
        - median(_beyond_epochs(client, first)),
        "per_trial_beyond_epochs_s": (search_s - epochs_s) / len(outcome.trials),
    }


def _test_accuracies(client: MlflowClient, run_ids: list[str]) -> list[float]:
    return [float(client.get_run(r).data.metrics["test_accuracy"]) for r in run_ids]


def quality(folder: Path) -> dict:
    """The documented search's figures, from its folder and this project's store."""
    outcome = Outcome.read(folder)
    client = MlflowClient(store.uri())
    winner = outcome.winner()
    assert winner is not None, "the search named no winner"
    mine = winner.seeded_runs(outcome.rungs[-1])
    sweep = Path(tempfile.mkdtemp(prefix="sweep-best-"))
    command = [
        "-m",
        "pipeline.sweep",
        "-m",
        *SWEEP_BEST,
        "replicates=3",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)  # jobs done: reused
    best_cell = [json.loads(p.read_text())["run_id"] for p in sweep.glob("*/run.json")]
    parent = client.get_run(json.loads((folder / "sweep.json").read_text())["parent_run_id"])
    return {
        "date": datetime.fromtimestamp(parent.info.start_time / 1000, UTC).isoformat(),
        "wall_s": (parent.info.end_time - parent.info.start_time) / 1000,
        "trials": len(outcome.trials),
        "rungs": outcome.rungs,
        "winner": winner.params,
        "winner_test": _test_accuracies(client, mine),
        "default_test": _test_accuracies(client, list(outcome.baseline.values())),
        "sweep_best_test": _test_accuracies(client, best_cell),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quality", type=Path, help="the folder of a finished search=mlp")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    results = json.loads(args.output.read_text())
    found: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.quality:
        found["quality"] = quality(args.quality.resolve())
    elif "quality" in results.get("search", {}):  # measured before: kept
        found["quality"] = results["search"]["quality"]
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        print("preparing a copy of the project and its data ...", file=sys.stderr)  # noqa: T201
        found["cost"] = cost(Project(Path(folder)))
    write(results | {"search": found}, args.output)


if __name__ == "__main__":
    main()
