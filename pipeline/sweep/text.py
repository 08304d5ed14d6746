"""The sweep report's text for people: the summary line, the configurations over their
seeds (mean ± sd and the 95% interval) and the jobs, as markdown."""

from __future__ import annotations

import pandas as pd

from pipeline.analysis import stats
from pipeline.sweep import findings
from pipeline.tracking import names

ACCURACIES = (
    names.TRAIN_ACCURACY,
    names.VAL_ACCURACY,
    names.TEST_ACCURACY,
    names.TRAIN_TEST_GAP,
    names.TRAIN_TEST_GAP_EVALUATED,
)


def failed(rows: pd.DataFrame) -> int:
    """How many jobs did not finish."""
    return int((rows["status"] != "FINISHED").sum())


def counts(rows: pd.DataFrame) -> dict[str, int]:
    """The jobs, and how many of them ran, were reused (done before) and failed."""
    reused = int(rows["reused"].astype(bool).sum()) if "reused" in rows else 0
    return {
        names.JOBS: len(rows),
        names.JOBS_RUN: len(rows) - reused,
        names.JOBS_REUSED: reused,
        names.JOBS_FAILED: failed(rows),
    }


def jobs_table(rows: pd.DataFrame) -> str:
    """The jobs' table for people: accuracies in percent, the gap in percentage points."""
    shown = rows.drop(columns=["run_id"])
    if "reused" in shown:  # a job done before: its run, not run again
        shown["reused"] = shown["reused"].map({True: "yes", False: ""})
    for metric in ACCURACIES:
        shown[metric] = (100 * shown[metric]).round(2)
    shown = shown.rename(
        columns={
            names.TRAIN_ACCURACY: "train %",
            names.VAL_ACCURACY: "val %",
            names.TEST_ACCURACY: "test %",
            names.TRAIN_TEST_GAP: "gap (points)",
            names.TRAIN_TEST_GAP_EVALUATED: "final model's gap",
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


def _spread(row: pd.Series, metric: str, scale: float, digits: int, unit: str = "") -> str:
    """`98.03% ± 0.05 (97.97 to 98.09)`: mean ± sd (95% interval) over seeds."""
    mean = row.get(metric + names.MEAN)
    if mean is None or pd.isna(mean):
        return "-"
    text = f"{scale * mean:.{digits}f}{unit}"
    sd, low = row.get(metric + names.SD), row.get(metric + names.CI_LOW)
    if sd is not None and pd.notna(sd):
        text += f" ± {scale * sd:.{digits}f}"
    if low is not None and pd.notna(low):
        high = row[metric + names.CI_HIGH]
        text += f" ({scale * low:.{digits}f} to {scale * high:.{digits}f})"
    return text


def _epochs(row: pd.Series, metric: str) -> str:
    """`4.5 (4 to 5)`: an epoch's mean and range over seeds (a t interval over a few whole
    epochs says little, and runs past the first and last epoch)."""
    mean = row.get(metric + names.MEAN)
    if mean is None or pd.isna(mean):
        return "-"
    low, high = int(row[metric + findings.MIN]), int(row[metric + findings.MAX])
    return f"{mean:.1f}" + (f" ({low} to {high})" if low != high else "")


def _onsets(row: pd.Series) -> str:
    """`epoch 4 to 5 in 2 of 10`: where overfitting starts, in the seeds where it does (an
    average with the others would be no epoch at all)."""
    seen, seeds = int(row[names.ONSET + findings.SEEDS]), int(row["seeds"])
    if not seen:
        return f"none of {seeds}" if seeds > 1 else "-"
    low, high = int(row[names.ONSET + findings.MIN]), int(row[names.ONSET + findings.MAX])
    at = f"epoch {low}" if low == high else f"epoch {low} to {high}"
    return at if seeds == 1 else f"{at} in {seen} of {seeds}"


def configurations_table(configurations: pd.DataFrame) -> str:
    """One row per configuration: mean ± sd (95% interval) over its seeds; epochs as the mean
    and range."""
    columns = {
        "val %": (names.VAL_ACCURACY, 100, 2),
        "test %": (names.TEST_ACCURACY, 100, 2),
        "gap (points)": (names.TRAIN_TEST_GAP, 100, 2),
        "final model's gap": (findings.FINAL_GAP, 100, 2),
    }
    shown = pd.DataFrame(
        {
            findings.CONFIGURATION: configurations[findings.CONFIGURATION],
            "seeds": configurations["seeds"],
        }
    )
    for title, (metric, scale, digits) in columns.items():
        shown[title] = [
            _spread(row, metric, scale, digits) for _, row in configurations.iterrows()
        ]
    shown["lowest val loss at"] = [
        _epochs(row, names.BEST_VAL_LOSS_EPOCH) for _, row in configurations.iterrows()
    ]
    shown["overfits from"] = [_onsets(row) for _, row in configurations.iterrows()]
    return shown.to_markdown(index=False)


def summary(rows: pd.DataFrame, configurations: pd.DataFrame, chosen: findings.Best | None) -> str:
    seeds = configurations["seeds"] if not configurations.empty else pd.Series([0])
    text = f"{len(rows)} jobs"
    if seeds.max() > 1:
        count = (
            f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()} to {seeds.max()}"
        )
        plural = "s" * (len(configurations) != 1)
        text += f" ({len(configurations)} configuration{plural} x {count} seeds)"
    tally = counts(rows)
    text += (
        f": {tally[names.JOBS_RUN]} run, {tally[names.JOBS_REUSED]} reused, "
        f"{tally[names.JOBS_FAILED]} failed."
    )
    if chosen is None:
        return text
    row = configurations.loc[configurations[findings.CONFIGURATION] == chosen.label].iloc[0]
    numbers = (
        f"validation {_spread(row, names.VAL_ACCURACY, 100, 2, '%')}, "
        f"test {_spread(row, names.TEST_ACCURACY, 100, 2, '%')}"
    )
    over = f"mean ± sd (95% interval) over {row['seeds']} seeds"
    if len(configurations) == 1:
        spread = f" ({over})" if row["seeds"] > 1 else ""
        return text + f" {chosen.label.capitalize()}: {numbers}{spread}."
    if chosen.test is None:
        why = (
            "one seed: not tested against the others; `replicates=3` would"
            if row["seeds"] == 1
            else f"{over}; the others have one seed each: not tested against them"
        )
        return text + f" Best by validation accuracy: {chosen.label}: {numbers} ({why})."
    tied = "; ".join(chosen.tied) if chosen.tied else "none"
    untested = "; ".join(chosen.untested)
    return text + (
        f" Best by mean validation accuracy: {chosen.label}: {numbers} ({over}). Tied with "
        f"it, the seeds cannot tell them apart ({chosen.test}, Holm-adjusted, level "
        f"{stats.ALPHA}): {tied}."
        + (f" Not tested, one seed each: {untested}." if untested else "")
    )


def document(
    rows: pd.DataFrame,
    configurations: pd.DataFrame,
    chosen: findings.Best | None,
    chosen_run: str | None,
    conclusions: list[str],
) -> str:
    """The whole report: the summary, the conclusions, the configurations over their seeds
    (when replicated) and the jobs."""
    text = summary(rows, configurations, chosen)
    if chosen_run:
        text += f" Its first seed's run, tagged `{names.BEST_IN_SWEEP}`: {chosen_run}."
    text += "\n\n" + "".join(f"- {line}\n" for line in conclusions) + "\n"
    if not configurations.empty and configurations["seeds"].max() > 1:
        text += "Configurations, mean ± sd (95% interval) over seeds:\n\n"
        text += f"{configurations_table(configurations)}\n\nJobs:\n\n"
    return text + f"{jobs_table(rows)}\n"
