"""The sweep report: one row per job of a sweep, and where overfitting starts.

    python -m pipeline.sweep_report [PARENT_RUN_ID] [--output DIR]

Built from MLflow, the record of truth: the child runs of a sweep's parent run (the newest
sweep when no id is given). It writes `sweep_report.csv` (the table), `sweep_report.md` (the
same, readable) and `sweep_report.png` (test accuracy, the overfitting gap and test loss against
epochs, a line per batch size) to DIR (default: the sweep's Hydra folder), prints the table,
and puts it all on the parent run, whose description in the MLflow UI becomes the table. The
child with the highest validation accuracy is tagged `best_in_sweep`; the test set never picks
it.
A sweep publishes its own report when its last job ends.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from pipeline import config, entry
from pipeline.tracking import names, store, sweeps

log = logging.getLogger(__name__)

CSV, MARKDOWN, PLOT = "sweep_report.csv", "sweep_report.md", "sweep_report.png"
CURVES = "sweep_val_loss.png"
ACCURACIES = (
    names.TRAIN_ACCURACY,
    names.VAL_ACCURACY,
    names.TEST_ACCURACY,
    names.GAP,
    names.GAP_EVALUATED,
)
EPOCHS = (names.BEST_VAL_LOSS_EPOCH, names.ONSET)
METRICS = (*ACCURACIES, names.TEST_LOSS, *EPOCHS)  # test loss rising again: overfitting too
GAP = names.GAP_EVALUATED  # the final model's train accuracy - its test accuracy
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
    """One row per run: epochs, batch size and any other param that varies, status, final
    train/validation/test accuracy, the overfitting gap (train - test), test loss, and wall
    time."""
    params = [c.removeprefix("params.") for c in runs if c.startswith("params.")]
    varying = [p for p in params if p not in AXES and runs[f"params.{p}"].nunique() > 1]
    rows = pd.DataFrame(
        {
            "run": _column(runs, "tags.mlflow.runName"),
            "run_id": runs["run_id"],
            "status": runs["status"],
        }
    )
    for param in (*AXES, *sorted(varying)):
        rows[param.rpartition(".")[2]] = _typed(_column(runs, f"params.{param}"))
    for metric in METRICS:
        rows[metric] = pd.to_numeric(_column(runs, f"metrics.{metric}"), errors="coerce")
    rows["time_s"] = (runs["end_time"] - runs["start_time"]).dt.total_seconds().round(1)
    return rows.sort_values(
        ["epochs", "batch_size"], na_position="last", kind="stable", ignore_index=True
    )


def failed(rows: pd.DataFrame) -> int:
    """How many jobs did not finish."""
    return int((rows["status"] != "FINISHED").sum())


def best(rows: pd.DataFrame) -> pd.Series | None:
    """The finished run with the highest validation accuracy (never chosen on test accuracy)."""
    done = rows[(rows["status"] == "FINISHED") & rows[names.VAL_ACCURACY].notna()]
    return None if done.empty else done.loc[done[names.VAL_ACCURACY].idxmax()]


def markdown(rows: pd.DataFrame) -> str:
    """The table for people: accuracies in percent, the gap in percentage points."""
    shown = rows.drop(columns=["run_id"])
    for metric in ACCURACIES:
        shown[metric] = (100 * shown[metric]).round(2)
    shown = shown.rename(
        columns={
            names.TRAIN_ACCURACY: "train %",
            names.VAL_ACCURACY: "val %",
            names.TEST_ACCURACY: "test %",
            names.GAP: "gap (points)",
            names.GAP_EVALUATED: "final model's gap",
            names.BEST_VAL_LOSS_EPOCH: "lowest val loss at",
            names.ONSET: "overfits from",
            names.TEST_LOSS: "test loss",
            "time_s": "time (s)",
        }
    )
    for column in ("lowest val loss at", "overfits from"):
        shown[column] = shown[column].astype("Int64")
    formats = [".4f" if column == "test loss" else ".2f" for column in shown]
    shown = shown.astype(object).where(shown.notna(), None)  # a failed job's blanks
    return shown.to_markdown(index=False, floatfmt=formats, missingval="-")


def plot(rows: pd.DataFrame, path: Path) -> None:
    """Test accuracy, the overfitting gap and test loss against epochs, a line per batch size."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    figure = Figure(figsize=(13, 4), layout="constrained")
    panels = zip(
        figure.subplots(1, 3),
        (
            (names.TEST_ACCURACY, 100, "Test accuracy", "%"),
            (names.GAP, 100, "Overfitting gap (train - test accuracy)", "percentage points"),
            (names.TEST_LOSS, 1, "Test loss", "cross-entropy"),
        ),
        strict=True,
    )
    done = rows[rows["status"] == "FINISHED"]
    for axes, (metric, scale, title, unit) in panels:
        for batch, group in done.groupby("batch_size"):
            group = group.sort_values("epochs")
            axes.plot(group["epochs"], scale * group[metric], "o-", label=f"batch {batch}")
        axes.set(title=title, xlabel="epochs", ylabel=unit)
        axes.set_xticks(sorted(done["epochs"].dropna().unique()))
        axes.grid(alpha=0.3)
        if done["batch_size"].notna().any():
            axes.legend()
    figure.savefig(path, dpi=110)


def validation_curves(rows: pd.DataFrame, losses: dict[str, list[float]], path: Path) -> None:
    """Every finished job's validation loss per epoch, a line each, its onset marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    for job in rows[rows["run_id"].isin(losses)].itertuples():
        curve = losses[str(job.run_id)]
        (line,) = axes.plot(range(1, len(curve) + 1), curve, "-", label=str(job.run))
        if pd.notna(job.overfitting_onset_epoch):
            onset = int(job.overfitting_onset_epoch)
            axes.plot(onset, curve[onset - 1], "x", color=line.get_color(), markersize=10)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(
        title="Validation loss per epoch (x: where overfitting starts)",
        xlabel="epoch",
        ylabel="cross-entropy",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def _trend(values: list[float]) -> str:
    steps = [after - before for before, after in zip(values, values[1:], strict=False)]
    if all(step > 0 for step in steps):
        return "grows"
    if all(step < 0 for step in steps):
        return "shrinks"
    return "goes up and down"


def _points(gaps: pd.Series, where: list[str]) -> str:
    return ", ".join(
        f"{100 * gap:+.2f} points at {at}" for gap, at in zip(gaps, where, strict=True)
    )


def _group(label: str, group: pd.DataFrame) -> str:
    """Where one group of jobs (the same params but the epochs) bottoms, overfits, and how its
    gap moves with the epochs; the longest job has seen the most of the curve."""
    longest = group.iloc[-1]
    text = f"{label}: validation loss is lowest at epoch {int(longest[names.BEST_VAL_LOSS_EPOCH])}"
    text += f" of {int(longest['epochs'])}"
    onset = longest[names.ONSET]
    if pd.notna(onset):
        text += f", and overfitting starts at epoch {int(onset)}"
    else:
        text += f", with no overfitting within {int(longest['epochs'])} epochs"
    gaps = _points(group[GAP], [f"{int(e)} epochs" for e in group["epochs"]])
    if len(group) > 1:
        return f"{text}; the final model's gap {_trend(group[GAP].tolist())} with epochs: {gaps}."
    return f"{text}; the final model's gap is {gaps}."


def _by_batch(done: pd.DataFrame) -> list[str]:
    """How the gap moves with the batch size, at each number of epochs every batch ran."""
    lines = []
    for epochs, group in done.groupby("epochs"):
        if group["batch_size"].nunique() < 2:
            continue
        group = group.sort_values("batch_size")
        verdict = {"shrinks": "smaller batches overfit more", "grows": "larger ones do"}.get(
            _trend(group[GAP].tolist()), "no steady order"
        )
        gaps = _points(group[GAP], [f"batch {int(b)}" for b in group["batch_size"]])
        lines.append(f"At {int(epochs)} epochs the gap by batch size is {gaps}: {verdict}.")
    return lines


def conclusions(rows: pd.DataFrame) -> list[str]:
    """What the finished jobs say, drawn from their numbers: for each group of jobs that share
    every param but the epochs, where validation loss bottoms, where overfitting starts, how
    the final model's gap grows with the epochs; then with the batch size."""
    done = rows[(rows["status"] == "FINISHED") & rows[GAP].notna()]
    done = done[done[names.BEST_VAL_LOSS_EPOCH].notna()]
    fixed = {"run", "run_id", "status", "time_s", "epochs", *METRICS}
    keys = [column for column in rows.columns if column not in fixed]
    if done.empty:
        return []
    if not keys:
        return [_group("All jobs", done.sort_values("epochs"))]
    lines = []
    for values, group in done.groupby(keys):
        label = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in zip(keys, values, strict=True))
        lines.append(_group(label.capitalize(), group.sort_values("epochs")))
    return lines + (_by_batch(done) if keys == ["batch_size"] else [])


def summary(rows: pd.DataFrame, chosen: pd.Series | None) -> str:
    text = f"{len(rows)} jobs, {failed(rows)} failed."
    if chosen is not None:
        text += (
            f" Best by validation accuracy: {chosen['run']} (run {chosen['run_id']}): "
            f"validation {100 * chosen[names.VAL_ACCURACY]:.2f}%, test "
            f"{100 * chosen[names.TEST_ACCURACY]:.2f}%, overfitting gap "
            f"{100 * chosen[names.GAP]:+.2f} points."
        )
    return text


def publish(parent_id: str, output: Path | None = None) -> pd.DataFrame:
    """Build a sweep's report from MLflow, write it to `output` (default: the sweep's folder),
    put it on the parent run and tag the best child; return the table."""
    tags, runs = sweeps.children(parent_id)
    if runs.empty:
        raise store.TrackingError(f"sweep run {parent_id} has no jobs in {store.uri()}")
    rows = table(runs)
    chosen = best(rows)
    output = output or Path(tags.get(names.SWEEP_DIR) or f"reports/sweep-{parent_id}")
    output.mkdir(parents=True, exist_ok=True)
    rows.to_csv(output / CSV, index=False)
    findings = "".join(f"- {line}\n" for line in conclusions(rows))
    text = f"{summary(rows, chosen)}\n\n{findings}\n{markdown(rows)}\n"
    (output / MARKDOWN).write_text(text)
    plot(rows, output / PLOT)
    finished = rows.loc[rows["status"] == "FINISHED", "run_id"].tolist()
    validation_curves(rows, sweeps.curves(finished, "val_loss"), output / CURVES)
    metrics = {"jobs": float(len(rows)), "jobs_failed": float(failed(rows))}
    if chosen is not None:
        metrics |= {
            names.BEST_VAL_ACCURACY: float(chosen[names.VAL_ACCURACY]),
            names.BEST_TEST_ACCURACY: float(chosen[names.TEST_ACCURACY]),
        }
    sweeps.publish(
        parent_id,
        None if chosen is None else str(chosen["run_id"]),
        metrics,
        [output / CSV, output / MARKDOWN, output / PLOT, output / CURVES],
        text,
    )
    log.info("sweep report in %s and on MLflow run %s:\n%s", output, parent_id, text)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sweep_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("parent", nargs="?", help="the sweep's parent run id (default: newest)")
    parser.add_argument("--experiment", help="default: tracking.experiment in conf/")
    parser.add_argument("--output", type=Path, help="folder for the report files")
    args = parser.parse_args(argv)
    experiment = args.experiment or config.defaults().tracking.experiment
    publish(args.parent or sweeps.latest(experiment), args.output)


if __name__ == "__main__":
    entry.run(main)
