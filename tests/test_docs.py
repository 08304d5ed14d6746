"""Numbers once: every figure the README and docs/ quote is read from the generated file that
holds it, formatted as the doc writes it, and looked for in the doc; a doc that drifted from
its source fails here. And every link inside the project leads somewhere."""

from __future__ import annotations

import csv
import statistics

import pytest

from .helpers import ROOT
from .helpers.docs import DOCS, anchors, figure, links, prose, quoted, source

METRICS = "reports/metrics.json"  # evaluate's, for the committed run
HISTORY = "reports/history.csv"  # train's, the same run per epoch
BENCH = "bench/results.json"  # python -m bench
BENCH_TABLE = "bench/RESULTS.md"  # python -m bench, for people
SWEEP = "reports/sweep-overfitting/sweep_report.md"  # python -m pipeline.sweep.report (make sweep)
SEEDS = "reports/sweep-seeds/metrics.json"  # the sweep over 10 seeds of the default
REPORTS = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("reports/sweep-*/sweep_report.md"))
SWEEPS = "docs/sweeps.md"
README, PIPELINE, PERFORMANCE = "README.md", "docs/pipeline.md", "docs/performance.md"


def percent(x):
    return f"{100 * x:.2f}%"


def bare(x):
    """A percentage without its sign, as an interval's ends are written."""
    return f"{100 * x:.2f}"


def points(x):
    return f"{100 * x:+.2f}"


def seconds(digits):
    return lambda x: f"{x:.{digits}f} s"


def ratio(x):
    return f"{x:.2f}x"


def day(x):
    return x[:10]


def last(h):
    return h[str(len(h))]


def peer(name, key):
    return lambda b: b["training"]["peers"][name][key]


def accuracy(name):
    return lambda b: statistics.median(b["training"]["peers"][name]["test_accuracy"])


def warmup(name):
    return lambda b: peer(name, "first_epoch_s")(b) - peer(name, "epoch_s")(b)


def cache(key):
    return lambda b: b["checkpoints"][key]


def onset(m):
    found = m["overfitting_onset_epoch"]
    return f"not within {m['epochs_trained']} epochs" if found is None else f"epoch {found}"


def positive_from(h):
    """The epoch from which the true gap stays above zero."""
    gaps = {int(epoch): row["train_val_gap"] for epoch, row in h.items()}
    return min(e for e in gaps if all(gap > 0 for later, gap in gaps.items() if later >= e))


JAX, TF = "pipeline, JAX", "pipeline, TensorFlow"
NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
NUMBERS += ["eleven", "twelve", "thirteen", "fourteen", "fifteen"]

# (doc, what it says with {} for each figure, source, the figures' keys, how the doc writes them)
# fmt: off
FIGURES = [
    (README, "accuracy **{}** (95% interval {} to {} on the 10,000 test digits), in the "
     "notebook's band", METRICS, ("test_accuracy", "test_accuracy_ci_low",
                                  "test_accuracy_ci_high"), (percent, bare, bare)),
    (README, "give a test accuracy of {} on average, sd {}, from {} to {}", SEEDS,
     tuple(f"epochs 5, batch size 128/test_accuracy{s}" for s in ("_mean", "_sd", "_min",
                                                                  "_max")),
     (percent, bare, bare, percent)),
    (README, "last epoch gives {}", METRICS, "train_accuracy", percent),
    (README, "overfitting gap of {} points", METRICS, "overfitting_gap", points),
    (README, "training digits gives {}, a gap of {}.", METRICS,
     ("train_accuracy_evaluated", "overfitting_gap_evaluated"), (percent, points)),
    (README, "the gap is {} points at epoch 1", HISTORY, "1/train_val_gap", points),
    (README, "(the running mean's says {})", HISTORY,
     lambda h: h["1"]["accuracy"] - h["1"]["val_accuracy"], points),
    (README, "positive from epoch {} on", HISTORY, positive_from, str),
    (README, "growing to {}.", HISTORY, lambda h: last(h)["train_val_gap"], points),
    (README, "Validation loss is lowest at epoch {}", METRICS, "best_val_loss_epoch", str),
    (PIPELINE, "test accuracy {} (95% interval {} to {}) | validation accuracy {} (95% "
     "interval {} to {}) | train accuracy {} (the final model: {})", METRICS,
     ("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "val_accuracy",
      "val_accuracy_ci_low", "val_accuracy_ci_high", "train_accuracy",
      "train_accuracy_evaluated"), (percent, bare, bare, percent, bare, bare, percent, percent)),
    (PIPELINE, "overfitting gap {} points (the final model's: {})", METRICS,
     ("overfitting_gap", "overfitting_gap_evaluated"), points),
    (PIPELINE, "last epoch) | {} |", METRICS, "train_accuracy", percent),
    (PIPELINE, "54,000 training digits | {} |", METRICS, "train_accuracy_evaluated", percent),
    (PIPELINE, "| validation accuracy (final epoch) | {} |", METRICS, "val_accuracy", percent),
    (PIPELINE, "| **test accuracy** | **{}**", METRICS, "test_accuracy", percent),
    (PIPELINE, "(train - test) | **{} points** |", METRICS, "overfitting_gap", points),
    (PIPELINE, "gap of the final model | {} points |", METRICS,
     "overfitting_gap_evaluated", points),
    (PIPELINE, "| test loss | {} |", METRICS, "test_loss", "{:.4f}".format),
    (PIPELINE, "validation accuracy | epoch {} / epoch {} |", METRICS,
     ("best_val_loss_epoch", "best_val_accuracy_epoch"), str),
    (PIPELINE, "| overfitting starts | {} |", METRICS, onset, str),
    (PIPELINE, "the running mean is {} against {} on validation", HISTORY,
     ("1/accuracy", "1/val_accuracy"), percent),
    (PIPELINE, "Epoch 1 then shows {} against {}", HISTORY,
     ("1/train_sample_accuracy", "1/val_accuracy"), percent),
    (PIPELINE, "a gap of {} points, not {}.", HISTORY,
     ("1/train_val_gap", lambda h: h["1"]["accuracy"] - h["1"]["val_accuracy"]), points),
    (PERFORMANCE, "{} were missed on {}", BENCH_TABLE,
     (lambda t: t.count("| **no** |"), lambda t: t.split("(")[1][:10]),
     (lambda n: NUMBERS[n].capitalize(), str)),
    (PERFORMANCE, "the committed one ({}) at {} GFLOP/s and {}", BENCH,
     ("date", "floor/matmul_gflops", "pipeline/import_keras_s"),
     (day, "{:.0f}".format, seconds(1))),
    (PERFORMANCE, "Measured {} ([bench/RESULTS.md](../bench/RESULTS.md)): the 3x3", BENCH,
     "date", day),
    (PERFORMANCE, "took {} with the cache, {} without it ({}) and {} as its 9 jobs run "
     "separately ({};", BENCH,
     (cache("sweep_cached_s"), cache("sweep_uncached_s"),
      lambda b: cache("sweep_cached_s")(b) / cache("sweep_uncached_s")(b),
      cache("sweep_jobs_separately_s"),
      lambda b: cache("sweep_cached_s")(b) / cache("sweep_jobs_separately_s")(b)),
     (seconds(0), seconds(0), ratio, seconds(0), ratio)),
    (PERFORMANCE, "the command: {} against {} from scratch ({};", BENCH,
     (cache("exp_10_after_5_s"), cache("exp_10_scratch_s"),
      lambda b: cache("exp_10_after_5_s")(b) / cache("exp_10_scratch_s")(b)),
     (seconds(1), seconds(1), ratio)),
    (PERFORMANCE, "about {} are epochs", BENCH, lambda b: 10 * cache("epoch_s")(b), seconds(0)),
    (PERFORMANCE, "the fixed part, about {} here, under the time of 2.5 epochs ({})", BENCH,
     (lambda b: cache("exp_10_scratch_s")(b) - 10 * cache("epoch_s")(b),
      lambda b: 2.5 * cache("epoch_s")(b)),
     (seconds(0), seconds(1))),
    (PERFORMANCE, "Keeping a checkpoint costs {} an epoch, {} of a steady epoch of {}", BENCH,
     (cache("write_s"), lambda b: cache("write_s")(b) / cache("epoch_s")(b), cache("epoch_s")),
     (lambda x: f"{1000 * x:.0f} ms", lambda x: f"{100 * x:.1f}%", seconds(2))),
    (PERFORMANCE, "Measured {} in one benchmark run", BENCH, "date", day),
    (PERFORMANCE, "the pipeline's epoch takes {} against {} on TensorFlow", BENCH,
     (peer(JAX, "epoch_s"), peer(TF, "epoch_s")), seconds(2)),
    (PERFORMANCE, "its first epoch {} more than a steady one ({} on TensorFlow)", BENCH,
     (warmup(JAX), warmup(TF)), seconds(2)),
    (PERFORMANCE, "its train step {} in all against {}", BENCH,
     (peer(JAX, "script_s"), peer(TF, "script_s")), seconds(1)),
    (PERFORMANCE, "train and evaluate {} against {}, where the notebook's own script on JAX "
     "takes {}",
     BENCH, ("pipeline/repro_train_evaluate_s", "pipeline/repro_other_backend_s",
             "pipeline/notebook_script_s"), seconds(1)),
    (PERFORMANCE, "in the same benchmark run, {} against {} test accuracy", BENCH,
     (accuracy(JAX), accuracy(TF)), percent),
    (PERFORMANCE, "**The first epoch over a steady one** ({} on {};", BENCH,
     (warmup(JAX), "date"), (seconds(2), day)),
    (PERFORMANCE, "no-op `dvc repro` took {} (1.25 s on", BENCH,
     "pipeline/noop_repro_s", seconds(2)),
    (PERFORMANCE, "**The sweep's cost per extra job, {}**", BENCH,
     "sweep/overhead_per_job_s", seconds(2)),
    (PERFORMANCE, "of 10 epochs after 5, {}.**", BENCH,
     lambda b: cache("exp_10_after_5_s")(b) / cache("exp_10_scratch_s")(b), ratio),
]
# fmt: on
DEFAULT = "epochs 5, batch size 128"  # the default configuration in its sweep's report


def over_seeds(metric, form):
    """A row of docs/sweeps.md's table of the 10 seeds: mean, sd, interval, range."""
    suffixes = ("_mean", "_sd", "_ci_low", "_ci_high", "_min", "_max")
    keys = tuple(f"{DEFAULT}/{metric}{suffix}" for suffix in suffixes)
    template = "| {} | {} | {} to {} | {} to {} |"
    return (SWEEPS, template, SEEDS, keys, (form, bare, bare, bare, bare, bare))


FIGURES += [
    over_seeds("test_accuracy", percent),
    over_seeds("val_accuracy", percent),
    over_seeds("overfitting_gap_evaluated", points),
    over_seeds("overfitting_gap", points),
]


def expected(template, path, keys, formats):
    keys = keys if isinstance(keys, tuple) else (keys,)
    formats = formats if isinstance(formats, tuple) else (formats,) * len(keys)
    data = source(path)
    return template.format(*(f(figure(data, key)) for key, f in zip(keys, formats, strict=True)))


@pytest.mark.parametrize(
    "doc, template, path, keys, formats", FIGURES, ids=[f"{f[0]}: {f[1]}" for f in FIGURES]
)
def test_a_figure_the_docs_quote_is_its_sources(doc, template, path, keys, formats):
    says = expected(template, path, keys, formats)
    assert says in prose(doc), (
        f"{doc} should say {says!r}, as {path} holds it: quote the source again, with its "
        "date, or link to it instead"
    )


def test_the_per_epoch_table_is_the_committed_history():
    rows = [
        f"| {epoch} | {percent(e['accuracy'])} | {percent(e['train_sample_accuracy'])} | "
        f"{percent(e['val_accuracy'])} | {points(e['train_val_gap'])} | {e['val_loss']:.4f} |"
        for epoch, e in source(HISTORY).items()
    ]
    assert [row for row in rows if row not in prose(PIPELINE)] == [], f"as {HISTORY} has it"


@pytest.mark.parametrize("doc", [README, SWEEPS, PIPELINE])
def test_the_sweep_conclusions_quoted_are_the_generated_reports(doc):
    reports = [" ".join(source(report).split()) for report in REPORTS]
    items = quoted(doc)
    assert items, f"{doc} quotes a sweep report"
    missing = [item for item in items if not any(item in report for report in reports)]
    assert missing == [], f"in none of {REPORTS}"


def test_the_sweeps_5_by_128_job_with_the_default_seed_is_the_committed_run():
    """docs/sweeps.md: the `5 x 128` job gives the same test accuracy as `dvc repro`."""
    jobs = csv.DictReader(source("reports/sweep-overfitting/sweep_report.csv").splitlines())
    job = next(
        job
        for job in jobs
        if (job["epochs"], job["batch_size"], job.get("seed", "42")) == ("5", "128", "42")
    )
    assert float(job["test_accuracy"]) == source(METRICS)["test_accuracy"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_inside_the_project_leads_somewhere(doc):
    broken = []
    for target in links(doc):
        path, _, anchor = target.partition("#")
        where = (ROOT / doc).parent / path if path else ROOT / doc
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md":
            if anchor not in anchors(str(where.resolve().relative_to(ROOT))):
                broken.append(f"{target}: no such heading")
    assert broken == []


def test_the_readme_is_a_short_front_door():
    assert len((ROOT / README).read_text().splitlines()) <= 250, "move the detail to docs/"


def test_where_is_what_names_every_module():
    """The README's table is how a newcomer finds the engine, the cache, the tracking rooms."""
    table = (ROOT / README).read_text().split("## Where is what")[1].split("\n## ")[0]
    modules = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "pipeline").rglob("*.py")
        if p.name != "__init__.py"
    )
    assert [m for m in modules if f"`{m}`" not in table] == []
    named = {tests for tests in table.split("`") if tests.startswith("tests/test_")}
    assert sorted(t for t in named if not (ROOT / t).is_file()) == []
