"""The sweep report: one row per job, one per configuration over its seeds, and what the
jobs say with their noise.

    python -m pipeline.sweep.report [PARENT_RUN_ID] [--output DIR]

Built from MLflow, the record of truth: the child runs of a sweep's parent run (the newest
sweep when no id is given). Replicates (`replicates=N`: the same params, other seeds) are one
configuration (`pipeline.sweep.findings`). It writes to DIR (default: the sweep's Hydra folder)
`sweep_report.csv` (the jobs), `sweep_configurations.csv` and `metrics.json` (each
configuration's mean, sd and 95% interval over its seeds; each job's run gets its
configuration's too), `sweep_report.md` (the conclusions, then both tables, readable)
and two pictures (`pipeline.sweep.plots`); prints it, and puts it all on the parent run, whose
description in the MLflow UI becomes the text. The best configuration is the one with the
highest mean validation accuracy (the test set never picks it), named with those the seeds
cannot tell from it; its first seed's job is tagged `best_in_sweep`, and is the one model a
sweep registers. A sweep publishes its own report when its last job ends.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import config
from pipeline.common import entry, files
from pipeline.config import replicates
from pipeline.sweep import findings
from pipeline.sweep import plots as sweep_plots
from pipeline.sweep import text as sweep_text
from pipeline.tracking import names, queues, store, sweeps

log = logging.getLogger(__name__)

CSV, MARKDOWN, PLOT = "sweep_report.csv", "sweep_report.md", "sweep_report.png"
CURVES = "sweep_val_loss.png"
CONFIGURATIONS = "sweep_configurations.csv"  # one row per configuration, over its seeds
METRICS_JSON = "metrics.json"  # the same, by configuration: mean, sd, 95% interval
ACCURACIES = sweep_text.ACCURACIES
EPOCHS = (names.BEST_VAL_LOSS_EPOCH, names.ONSET)
METRICS = (*ACCURACIES, names.TEST_LOSS, *EPOCHS)  # test loss rising again: overfitting too
AXES = ("train.epochs", "train.batch_size")


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A column of `mlflow.search_runs` output; all missing when no run logged it."""
    return runs[name] if name in runs else pd.Series(pd.NA, index=runs.index, dtype=object)


def _typed(values: pd.Series) -> pd.Series:
    """MLflow params are strings: numbers become numbers (whole ones integers), others stay."""
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers.notna().equals(values.notna()):
        return values
    return numbers.astype("Int64") if (numbers.dropna() % 1 == 0).all() else numbers


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: epochs, batch size and any other param of its configuration that
    varies, its seed, status, final train/validation/test accuracy, the overfitting gap (train
    - test), test loss, and wall time. Params that decide no number (`replicates`, `reuse`)
    are not columns: runs that differ only in those are replicates of one configuration."""
    params = [c.removeprefix("params.") for c in runs if c.startswith("params.")]
    varying = [
        p
        for p in params
        if p not in AXES
        and (replicates.decides(p) or p == replicates.SEED)
        and runs[f"params.{p}"].nunique() > 1
    ]
    rows = pd.DataFrame(
        {
            "run": _column(runs, "tags.mlflow.runName"),
            "run_id": runs["run_id"],
            "status": runs["status"],
            "reused": runs["reused"] if "reused" in runs else False,
        }
    )
    for param in (*AXES, *sorted(varying)):
        rows[param.rpartition(".")[2]] = _typed(_column(runs, f"params.{param}"))
    for metric in METRICS:
        rows[metric] = pd.to_numeric(_column(runs, f"metrics.{metric}"), errors="coerce")
    # A run not ended (RUNNING, or ended by a store that lost the time) has no end time.
    took = pd.to_datetime(runs["end_time"], utc=True) - pd.to_datetime(
        runs["start_time"], utc=True
    )
    rows["time_s"] = took.dt.total_seconds().round(1)
    order = ["epochs", "batch_size", *([findings.SEED] if findings.SEED in rows else [])]
    return rows.sort_values(order, na_position="last", kind="stable", ignore_index=True)


@dataclass(frozen=True)
class Report:
    rows: pd.DataFrame  # one per job
    best: findings.Best | None
    chosen_run: str | None  # the best configuration's first seed: the one a sweep registers


def _chosen_run(best: findings.Best | None) -> str | None:
    """The best configuration's job with the first seed (never picked on its own noise)."""
    if best is None:
        return None
    runs = best.runs.sort_values(findings.SEED) if findings.SEED in best.runs else best.runs
    return str(runs["run_id"].iloc[0])


def _summaries(row: pd.Series) -> dict[str, float]:
    """A configuration's mean, sd and 95% interval over its seeds of each summarized metric,
    and range, as MLflow metrics (`val_accuracy_mean`, `_sd`, `_ci_low`, `_ci_high`, `_min`, ...);
    where overfitting starts: in how many seeds it does, and their mean and range."""
    found = {}
    for metric in findings.SUMMARIZED:
        spread: tuple[str, ...] = (names.MEAN, names.SD, names.CI_LOW, names.CI_HIGH)
        spread += (findings.MIN, findings.MAX)
        if metric == names.ONSET:
            spread = (findings.SEEDS, names.MEAN, findings.MIN, findings.MAX)
        for suffix in spread:
            value = row.get(metric + suffix)
            if value is not None and pd.notna(value):
                found[metric + suffix] = float(value)
    return found


def _by_run(
    rows: pd.DataFrame, configurations: pd.DataFrame, by: list[str]
) -> dict[str, dict[str, float]]:
    """Each finished job's configuration summary (of two seeds or more), for its own run."""
    summarized = {row[findings.CONFIGURATION]: row for _, row in configurations.iterrows()}
    found: dict[str, dict[str, float]] = {}
    for values, group in findings.groups(findings.finished(rows), by):
        row = summarized[findings.label(values)]
        if row["seeds"] > 1:  # a reused run keeps what it was given: it is another's record
            own = group.loc[~group["reused"].astype(bool), "run_id"]
            found |= {str(run_id): _summaries(row) for run_id in own}
    return found


def _parent_metrics(
    rows: pd.DataFrame, configurations: pd.DataFrame, best: findings.Best | None
) -> dict[str, float]:
    metrics = {name: float(value) for name, value in sweep_text.counts(rows).items()}
    metrics[names.CONFIGURATIONS] = float(len(configurations))
    if best is None:
        return metrics
    row = configurations.loc[configurations[findings.CONFIGURATION] == best.label].iloc[0]
    metrics |= {
        names.BEST_VAL_ACCURACY: float(row[names.VAL_ACCURACY + names.MEAN]),
        names.BEST_TEST_ACCURACY: float(row[names.TEST_ACCURACY + names.MEAN]),
    }
    return metrics | _summaries(row)


def publish(parent_id: str, output: Path | None = None) -> Report:
    """Build a sweep's report from MLflow, write it to `output` (default: the sweep's folder),
    put it on the parent run and tag the best configuration's first seed; return it."""
    tags, runs = sweeps.children(parent_id)
    if runs.empty:
        raise store.TrackingError(f"sweep run {parent_id} has no jobs in {store.uri()}")
    rows = table(runs)
    by = findings.keys(rows, METRICS)
    configurations = findings.configurations(rows, by)
    chosen = findings.best(rows, by)
    output = output or Path(tags.get(names.SWEEP_DIR) or f"reports/sweep-{parent_id}")
    output.mkdir(parents=True, exist_ok=True)
    rows.to_csv(output / CSV, index=False)
    configurations.to_csv(output / CONFIGURATIONS, index=False)
    summaries = {
        row[findings.CONFIGURATION]: {"seeds": int(row["seeds"])} | _summaries(row)
        for _, row in configurations.iterrows()
    }
    files.write_text(output / METRICS_JSON, json.dumps(summaries, indent=2) + "\n")
    chosen_run = _chosen_run(chosen)
    text = sweep_text.document(
        rows, configurations, chosen, chosen_run, findings.conclusions(rows, by)
    )
    (output / MARKDOWN).write_text(text)
    sweep_plots.summary(rows, output / PLOT)
    finished = rows.loc[rows["status"] == "FINISHED", "run_id"].tolist()
    sweep_plots.validation_curves(rows, by, sweeps.curves(finished, "val_loss"), output / CURVES)
    sweeps.publish(
        parent_id,
        chosen_run,
        _parent_metrics(rows, configurations, chosen),
        [output / name for name in (CSV, CONFIGURATIONS, METRICS_JSON, MARKDOWN, PLOT, CURVES)],
        text,
    )
    sweeps.annotate(_by_run(rows, configurations, by))
    log.info("sweep report in %s and on MLflow run %s:\n%s", output, parent_id, text)
    return Report(rows, chosen, chosen_run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sweep.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("parent", nargs="?", help="the sweep's parent run id (default: newest)")
    parser.add_argument("--experiment", help="default: tracking.experiment in conf/")
    parser.add_argument("--output", type=Path, help="folder for the report files")
    parser.add_argument(
        "--end",
        action="store_true",
        help="then end the parent run FINISHED, or FAILED if a job failed; only once none of "
        "its jobs runs (the DVC queue's jobs ask for this as they end)",
    )
    args = parser.parse_args(argv)
    experiment = args.experiment or config.from_conf().tracking.experiment
    parent = args.parent or sweeps.latest(experiment)
    if args.end and (running := queues.pending(parent)):
        log.info("%d job(s) of sweep %s still run: the last to end publishes", running, parent)
        return
    report = publish(parent, args.output)
    if args.end:
        sweeps.end(parent, "FAILED" if sweep_text.failed(report.rows) else "FINISHED")


if __name__ == "__main__":
    entry.run(main)
