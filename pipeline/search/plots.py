"""The search's picture, drawn with matplotlib's object API (no pyplot, no display):
`search_rungs.png`, each trial's validation accuracy at each rung it reached, a line per
trial, the winner's drawn thick and the trials the seeds cannot tell from it in its colour."""

from __future__ import annotations

from pathlib import Path

from pipeline.search.driver import Outcome


def rungs(outcome: Outcome, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for trial in outcome.trials:
        epochs = sorted(trial.reached)
        values = [100 * trial.reached[e] for e in epochs]
        color, width = "0.6", 0.8
        if trial.number == outcome.best:
            color, width = "C3", 2.5
        elif trial.number in outcome.tied:
            color, width = "C1", 1.5
        label = f"best: trial {trial.number}" if trial.number == outcome.best else None
        axes.plot(epochs, values, marker="o", markersize=3, color=color, lw=width, label=label)
    axes.set_xscale("log")
    axes.set_xticks(outcome.rungs, [str(r) for r in outcome.rungs])
    axes.set_xlabel("epochs (the rungs)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(f"{len(outcome.trials)} trials: each goes on while in the top of its rung")
    if outcome.best is not None:
        axes.legend(loc="lower right")
    figure.savefig(path, dpi=110)
