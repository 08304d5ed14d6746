"""The search report: what the search found, with the tests behind each sentence.

Written at a search's end into its folder (`search_report.md`, `search_trials.csv`,
`search_rungs.png`) and onto its parent MLflow run (the description, the figure, the best
set's metrics). Validation accuracy decided everything in the search; the test digits are read
here for two configurations only: the winner's seeds against the default's (conf/ as it
is), with their intervals and Welch's test."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pandas as pd

from pipeline.analysis import stats
from pipeline.search import plots
from pipeline.search.driver import Outcome, Trial
from pipeline.sweep import findings
from pipeline.sweep import report as sweep_report
from pipeline.sweep import text as sweep_text
from pipeline.tracking import names, sweeps

log = logging.getLogger(__name__)

MARKDOWN, CSV, PLOT = "search_report.md", "search_trials.csv", "search_rungs.png"


def _label(trial: Trial) -> str:
    return f"trial {trial.number} (" + ", ".join(f"{k}={v}" for k, v in trial.params.items()) + ")"


def trials_table(outcome: Outcome) -> pd.DataFrame:
    """One row per trial: its params, its state, its validation accuracy at each rung."""
    rows = []
    for trial in outcome.trials:
        row: dict[str, object] = {"trial": trial.number, **trial.params, "state": trial.state}
        row |= {f"val % at {e}": round(100 * v, 2) for e, v in trial.reached.items()}
        rows.append(row | {"seeds": len(trial.seeds)})
    return pd.DataFrame(rows)


def importance(outcome: Outcome) -> dict[str, float]:
    """How much each knob decided the first rung's validation accuracy over every trial
    (Optuna's fANOVA, seeded); empty with fewer than two trials there."""
    first = outcome.rungs[0]
    done = [t for t in outcome.trials if first in t.reached]
    if len(done) < 2:
        return {}
    knobs = {k: optuna.distributions.json_to_distribution(v) for k, v in outcome.knobs.items()}
    study = optuna.create_study(direction="maximize")
    for trial in done:
        made = optuna.trial.create_trial(
            params=trial.params, distributions=knobs, value=trial.reached[first]
        )
        study.add_trial(made)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError) as err:  # every trial alike: nothing to split on
        log.info("no knob's importance: %s", err)
        return {}


def _spread(values: list[float]) -> str:
    found = stats.spread(values, within=(0.0, 1.0))
    text = f"{100 * found.mean:.2f}%"
    if found.sd is None or found.low is None or found.high is None:
        return text + " (1 seed)"
    return text + (
        f" ± {100 * found.sd:.2f} (95% interval {100 * found.low:.2f} to "
        f"{100 * found.high:.2f}, {len(values)} seeds)"
    )


def _on_test(rows: pd.DataFrame, run_ids: list[str]) -> list[float]:
    chosen = rows[rows["run_id"].isin(run_ids) & (rows["status"] == "FINISHED")]
    return chosen[names.TEST_ACCURACY].dropna().astype(float).tolist()


def verdict(outcome: Outcome, rows: pd.DataFrame) -> list[str]:
    """The sentences: the best set on validation, the races, the winner on the test digits."""
    best = outcome.winner()
    if best is None:
        return ["No trial finished the top rung: there is no best (see the trials below)."]
    by_number = {t.number: t for t in outcome.trials}
    lines = [f"Best: {_label(best)}: validation {_spread(best.values())}."]
    tied = [_label(by_number[n]) for n in outcome.tied]
    lines.append(
        "Tied with it, the seeds cannot tell them apart (Welch, Holm-adjusted, level "
        f"{outcome.level}): {'; '.join(tied)}."
        if tied
        else "No other contender is tied with it."
    )
    for race in outcome.races:
        p = "" if race["p_value"] is None else f", p = {race['p_value']:.3g}"
        lines.append(
            f"Race: trial {race['challenger']} against trial {race['incumbent']}: "
            f"{race['outcome']} ({race['seeds'][1]} and {race['seeds'][0]} seeds{p})."
        )
    winner = _on_test(rows, best.seeded_runs(outcome.rungs[-1]))
    baseline = _on_test(rows, list(outcome.baseline.values()))
    if min(len(winner), len(baseline)) >= 2:
        test = stats.welch(baseline, winner)
        lines.append(
            f"On the test digits, the winner {_spread(winner)} against the default (conf/ "
            f"as it is) {_spread(baseline)}: {100 * test.effect:+.2f} points, "
            f"p = {test.p_value:.3g} ({stats.WELCH})."
        )
    return lines


def _importance_text(weights: dict[str, float]) -> str:
    if not weights:
        return ""
    said = ", ".join(f"{key} {100 * weight:.0f}%" for key, weight in weights.items())
    return f"How much each knob decided the first rung (Optuna's fANOVA): {said}.\n\n"


def document(outcome: Outcome, rows: pd.DataFrame, weights: dict[str, float]) -> str:
    counts = sweep_text.counts(rows)
    text = (
        f"# Search: {len(outcome.trials)} trials over rungs of {outcome.rungs} epochs, "
        f"{counts[names.JOBS]} jobs: {counts[names.JOBS_RUN]} run, "
        f"{counts[names.JOBS_REUSED]} reused, {counts[names.JOBS_FAILED]} failed\n\n"
    )
    text += "".join(f"- {line}\n" for line in verdict(outcome, rows)) + "\n"
    text += _importance_text(weights)
    text += "Trials (validation accuracy at each rung they reached):\n\n"
    return text + trials_table(outcome).to_markdown(index=False) + "\n"


def _best(outcome: Outcome, rows: pd.DataFrame) -> tuple[findings.Best | None, str | None]:
    """The winner as the sweep's registration reads it, and its first seed's run."""
    winner = outcome.winner()
    if winner is None:
        return None, None
    own = winner.seeded_runs(outcome.rungs[-1])
    runs = rows[rows["run_id"].isin(own)]
    by_number = {t.number: t for t in outcome.trials}
    tied = [_label(by_number[n]) for n in outcome.tied]
    return findings.Best(_label(winner), winner.params, runs, tied, stats.WELCH, []), own[0]


def publish(parent_id: str, folder: Path) -> sweep_report.Report:
    """Write the search's report into its folder, put it on the parent run, tag the
    winner's first seed; return what the sweep registers."""
    outcome = Outcome.read(folder)
    _, runs = sweeps.children(parent_id)
    rows = sweep_report.table(runs)
    text = document(outcome, rows, importance(outcome))
    trials_table(outcome).to_csv(folder / CSV, index=False)
    (folder / MARKDOWN).write_text(text)
    plots.rungs(outcome, folder / PLOT)
    best, chosen_run = _best(outcome, rows)
    metrics = {"trials": float(len(outcome.trials))} | {
        key: float(value) for key, value in sweep_text.counts(rows).items()
    }
    if best is not None:
        metrics[names.BEST_VAL_ACCURACY] = float(best.runs[names.VAL_ACCURACY].mean())
        metrics[names.BEST_TEST_ACCURACY] = float(best.runs[names.TEST_ACCURACY].mean())
    sweeps.publish(
        parent_id, chosen_run, metrics, [folder / n for n in (MARKDOWN, CSV, PLOT)], text
    )
    log.info("search report in %s and on MLflow run %s:\n%s", folder, parent_id, text)
    return sweep_report.Report(rows, best, chosen_run)
