"""The search's rows in bench/RESULTS.md (`python -m bench.search` measures them): its
targets and the figures behind them. Pure: results.json's `search` in, rows out."""

from __future__ import annotations

from pipeline.analysis import stats


def search_targets(found: dict | None) -> list[tuple[str, str, str, bool]]:
    """The search issue's targets: what `search=mlp` found, and what a search costs."""
    if not found:
        return []
    rows = quality_targets(found["quality"]) if "quality" in found else []
    cost = found["cost"]
    ratio = cost["search_epochs"] / cost["grid_epochs"]
    inside = cost["search_winner"] in cost["grid_best"]
    promotion, per_trial = cost["promotion_beyond_first_s"], cost["per_trial_beyond_epochs_s"]
    return [
        *rows,
        (
            "search's winner in the 3x3 grid's best set (3 seeds each)",
            f"{'yes' if inside else 'no'}: {cost['search_winner']} in {cost['grid_best']}",
            "in it",
            inside,
        ),
        (
            "search's epochs / the grid's",
            f"{ratio:.2f}x ({cost['search_epochs']} / {cost['grid_epochs']})",
            "<= 0.33x",
            ratio <= 1 / 3,
        ),
        (
            "a promotion, beyond a fresh job of its extra epochs",
            f"{promotion:+.2f} s",
            "<= 0.5 s",
            promotion <= 0.5,
        ),
        (
            "search: per trial, beyond its epochs",
            f"{per_trial:.2f} s",
            "<= 0.5 s",
            per_trial <= 0.5,
        ),
    ]


def quality_targets(quality: dict) -> list[tuple[str, str, str, bool]]:
    """`search=mlp`'s winner over its seeds: its level, its time, and the tests."""

    mine = quality["winner_test"]
    spread = stats.spread(mine, within=(0.0, 1.0))
    low, high = 100 * (spread.low or spread.mean), 100 * (spread.high or spread.mean)
    rows = [
        (
            f"`search=mlp` ({quality['date'][:10]}): its winner's test accuracy over "
            f"{len(mine)} seeds (95% interval)",
            f"{100 * spread.mean:.2f}% ({low:.2f} to {high:.2f})",
            ">= 98.9%",
            spread.mean >= 0.989,
        ),
        (
            "`search=mlp`: wall time, 2 cores",
            f"{quality['wall_s'] / 60:.0f} min",
            "<= 60 min",
            quality["wall_s"] <= 3600,
        ),
    ]
    for name, key in (("the default", "default_test"), ("`make sweep`'s best", "sweep_best_test")):
        test = stats.welch(quality[key], mine)
        rows.append(
            (
                f"`search=mlp`'s winner against {name} ({len(quality[key])} seeds), Welch",
                f"{100 * test.effect:+.2f} points, p = {test.p_value:.2g}",
                "better, p < 0.05",
                test.effect > 0 and test.p_value < 0.05,
            )
        )
    return rows


def search_details(results: dict) -> list[str]:
    """The search's figures behind its targets (`python -m bench.search`)."""
    found = results.get("search")
    if not found:
        return []
    cost = found["cost"]
    per_job = cost["per_trial_beyond_epochs_s"] * cost["search_trials"] / cost["search_jobs"]
    lines = [
        f"| the 3x3 space ({found['date'][:10]}): the grid, 3 seeds x 9 epochs each / the "
        f"search, {cost['search_trials']} trials | {cost['grid_s']:.0f} s / "
        f"{cost['search_s']:.0f} s |",
        f"| the search's jobs (trials' rungs, races, the default's seeds), each beyond its "
        f"epochs | {cost['search_jobs']}, {per_job:.2f} s |",
    ]
    if quality := found.get("quality"):
        winner = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in quality["winner"].items())  # fmt: skip
        lines.append(
            f"| `search=mlp`: {quality['trials']} trials over rungs of {quality['rungs']} "
            f"epochs; its winner | {winner} |"
        )
    return lines
