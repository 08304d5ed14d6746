"""The benchmark's report: each speed issue's target against its figure, and the figures
behind them, as the markdown of bench/RESULTS.md. Pure: results.json's dict in, text out."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.costs import cost_table, cost_targets
from bench.measure import BACKENDS
from bench.search_figures import search_details, search_targets


def targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """(figure, measured, target, met) for each target of the speed issues."""
    speed, floor = results["training"], results["floor"]
    overhead, peaks = results["pipeline"], results["memory"]
    sweep, rebuild = results["sweep"], results["reproduce"]
    ratio = speed["pipeline"]["epoch_s"] / speed["notebook"]["epoch_s"]
    to_floor = speed["pipeline"]["epoch_s"] / floor["floor_s"]
    worst = max((s for s in peaks if s != "notebook"), key=peaks.get)
    mem = peaks[worst] / peaks["notebook"]
    noop, per_job = overhead["noop_repro_s"], sweep["overhead_per_job_s"]
    return [
        ("training s/epoch, pipeline / notebook", f"{ratio:.2f}x", "<= 0.70x", ratio <= 0.7),
        *peer_targets(speed),
        ("training s/epoch / compute floor", f"{to_floor:.2f}x", "<= 1.5x", to_floor <= 1.5),
        repro_target(overhead),
        *cost_targets(results.get("costs")),
        ("no-op dvc repro", f"{noop:.2f} s", "<= 1.0 s", noop <= 1.0),
        (
            "sweep: cost per extra job beyond training",
            f"{per_job:.2f} s",
            "<= 0.3 s",
            per_job <= 0.3,
        ),
        *replicate_targets(results.get("replicates")),
        (f"peak memory, worst stage ({worst}) / notebook", f"{mem:.2f}x", "<= 1.2x", mem <= 1.2),
        (
            "reproduce RUN, beyond its train stage",
            f"{rebuild['overhead_s']:+.1f} s ({', '.join(rebuild['verdicts'])})",
            "<= +5 s, identical",
            rebuild["overhead_s"] <= 5 and set(rebuild["verdicts"]) == {"identical"},
        ),
        *checkpoint_targets(results["checkpoints"]),
        *reuse_targets(results.get("reuse")),
        *search_targets(results.get("search")),
    ]


def repro_target(overhead: dict) -> tuple[str, str, str, bool]:
    """`dvc repro` of train and evaluate against the notebook's whole script on JAX."""
    repro = overhead["repro_train_evaluate_s"] / overhead["notebook_script_s"]
    figure = "dvc repro train+evaluate / the JAX notebook's whole script"
    return (figure, f"{repro:.2f}x", "<= 1.0x", repro <= 1.0)


def reuse_targets(found: dict | None) -> list[tuple[str, str, str, bool]]:
    """The job-reuse issue's targets: a finished sweep again, a stopped one resumed, and more
    seeds after some."""
    if not found:
        return []
    extra = found["resumed_s"] - found["left_alone_s"]
    more = found["seeds_10_after_5_s"] / found["seeds_10_scratch_s"]
    return [
        (
            "the 3x3 sweep again, every job done",
            f"{found['grid_again_s']:.1f} s",
            "<= 5 s",
            found["grid_again_s"] <= 5,
        ),
        (
            "a sweep stopped after half its jobs, resumed, beyond the jobs left",
            f"{extra:+.1f} s ({found['resumed_s']:.0f} s / {found['left_alone_s']:.0f} s)",
            "<= +5 s",
            extra <= 5,
        ),
        (
            "seeds 1-10 after 1-5 / seeds 1-10 from scratch",
            f"{more:.2f}x ({found['seeds_10_after_5_s']:.0f} s / "
            f"{found['seeds_10_scratch_s']:.0f} s)",
            "<= 0.55x",
            more <= 0.55,
        ),
    ]


def replicate_targets(found: dict | None) -> list[tuple[str, str, str, bool]]:
    """The noise issue's target: 10 seeds of the default, beyond their epochs."""
    if not found:
        return []
    return [
        (
            f"{found['seeds']} seeds of the default (a sweep) / their epochs alone",
            f"{found['ratio']:.2f}x ({found['sweep_s']:.0f} s / {found['epochs_s']:.0f} s)",
            "<= 1.2x",
            found["ratio"] <= 1.2,
        )
    ]


def peer_targets(speed: dict) -> list[tuple[str, str, str, bool]]:
    """The pipeline against the fastest peer, its warm-up, and every timed training's test
    accuracy within the notebook's band."""
    peers = speed["peers"]
    others = {name: p for name, p in peers.items() if not name.startswith("pipeline")}
    fastest = min(others, key=lambda name: others[name]["epoch_s"])
    to_fastest = speed["pipeline"]["epoch_s"] / others[fastest]["epoch_s"]
    warmup = speed["pipeline"]["first_epoch_s"] - speed["pipeline"]["epoch_s"]
    accuracies = [a for p in peers.values() for a in p["test_accuracy"]]
    return [
        (
            f"pipeline s/epoch / fastest peer's ({fastest})",
            f"{to_fastest:.2f}x",
            "<= 0.8x",
            to_fastest <= 0.8,
        ),
        ("pipeline: first epoch - steady epoch", f"{warmup:.2f} s", "<= 0.3 s", warmup <= 0.3),
        (
            "test accuracy of every timed training",
            f"{100 * min(accuracies):.2f}-{100 * max(accuracies):.2f}% ({len(accuracies)} runs)",
            "97.4-98.2%",
            all(0.974 <= a <= 0.982 for a in accuracies),
        ),
    ]


def checkpoint_targets(cache: dict) -> list[tuple[str, str, str, bool]]:
    """The checkpoint issue's targets."""
    shared = cache["sweep_cached_s"] / cache["sweep_jobs_separately_s"]
    extended = cache["exp_10_after_5_s"] / cache["exp_10_scratch_s"]
    keeping = cache["write_s"] / cache["epoch_s"]
    return [
        (
            "3x3 sweep with the cache / its 9 jobs run separately",
            f"{shared:.2f}x",
            "<= 0.6x",
            shared <= 0.6,
        ),
        (
            "`dvc exp run -S train.epochs=10` after the default / from scratch",
            f"{extended:.2f}x",
            "<= 0.6x",
            extended <= 0.6,
        ),
        ("keeping a checkpoint / an epoch", f"{100 * keeping:.1f}%", "<= 5%", keeping <= 0.05),
    ]


def markdown(results: dict) -> str:
    """RESULTS.md: the machine, then the targets table, then the details table."""
    lines = [
        f"# Benchmark results ({results['date']})",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{results['machine']['memory_gib']} GiB; Python {results['machine']['python']}, "
        f"jax {results['machine'].get('jax')}, tensorflow {results['machine']['tensorflow']}, "
        f"keras {results['machine']['keras']}"
        f", mlflow {results['machine']['mlflow']}, dvc {results['machine']['dvc']}. "
        f"Medians of {results['reps']} interleaved repetitions. `python -m bench` made it.",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {value} | {target} | {'yes' if met else '**no**'} |"
        for name, value, target, met in targets(results)
    ]
    costs = cost_table(results.get("costs"), results.get("costs_before"))
    return "\n".join(lines + ["", *details(results), *costs]) + "\n"


def details(results: dict) -> list[str]:
    """The figures behind the targets, as a markdown table."""
    speed, floor, overhead = results["training"], results["floor"], results["pipeline"]
    lines = ["| detail | value |", "|---|---|"]
    for name, peer in speed["peers"].items():
        accuracy = statistics.median(peer["test_accuracy"])
        lines.append(
            f"| {name}: s/epoch, first epoch, whole script, test accuracy | "
            f"{peer['epoch_s']:.2f} s, {peer['first_epoch_s']:.2f} s, {peer['script_s']:.1f} s, "
            f"{100 * accuracy:.2f}% |"
        )
    lines += [
        f"| {name} | not installed: `pip install -e '.[bench]'` |" for name in speed["left_out"]
    ]
    lines += [
        f"| matrix-multiply peak | {floor['matmul_gflops']:.0f} GFLOP/s |",
        f"| work per epoch (real / 3x rule) | {floor['gflop_real']:.0f} / "
        f"{floor['gflop_rule_of_3']:.0f} GFLOP |",
        f"| compute floor per epoch | {floor['floor_s']:.2f} s |",
        f"| dvc repro train+evaluate / the notebook's whole script on JAX | "
        f"{overhead['repro_train_evaluate_s']:.1f} s / "
        f"{overhead['notebook_script_s']:.1f} s |",
        f"| train+evaluate in one process (`python -m pipeline.sweep`) / the notebook's script "
        f"| {overhead['one_process_s'] / overhead['notebook_script_s']:.2f}x "
        f"({overhead['one_process_s']:.1f} s) |",
        f"| `import keras` on JAX (each stage's process) | {overhead['import_keras_s']:.1f} s |",
        f"| sweep of {results['sweep']['jobs']} jobs / of 1 job (1 epoch each) | "
        f"{results['sweep']['sweep_n_s']:.1f} s / {results['sweep']['sweep_1_s']:.1f} s |",
        f"| reproduce RUN / its train stage | {results['reproduce']['reproduce_s']:.1f} s / "
        f"{results['reproduce']['train_stage_s']:.1f} s |",
        "| peak memory (MiB) | "
        + ", ".join(f"{k} {v:.0f}" for k, v in results["memory"].items())
        + " |",
    ]
    other = overhead["repro_other_backend"]
    lines.append(
        f"| dvc repro train+evaluate on {BACKENDS[other]} (`KERAS_BACKEND={other}`) | "
        f"{overhead['repro_other_backend_s']:.1f} s |"
    )
    return lines + checkpoint_details(results["checkpoints"]) + search_details(results)


def checkpoint_details(cache: dict) -> list[str]:
    """The checkpoint cache's figures, as rows of the details table."""
    return [
        f"| 3x3 sweep: with the cache / without / its 9 jobs run separately | "
        f"{cache['sweep_cached_s']:.0f} s / {cache['sweep_uncached_s']:.0f} s "
        f"({cache['sweep_cached_s'] / cache['sweep_uncached_s']:.2f}x) / "
        f"{cache['sweep_jobs_separately_s']:.0f} s |",
        f"| the 9 job runs (MLflow start to end) inside the sweep without the cache | "
        f"{cache['sweep_job_runs_s']:.0f} s |",
        f"| `dvc exp run` of 10 epochs: after the default 5 / from scratch | "
        f"{cache['exp_10_after_5_s']:.1f} s / {cache['exp_10_scratch_s']:.1f} s |",
        f"| keeping a checkpoint / a steady epoch | {1000 * cache['write_s']:.0f} ms / "
        f"{cache['epoch_s']:.2f} s |",
    ]


def write(results: dict, output: Path) -> None:
    """results.json and RESULTS.md beside it, and the report on stdout."""
    output.write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    output.with_name("RESULTS.md").write_text(report)
    print(report)  # noqa: T201
