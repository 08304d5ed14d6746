"""`python -m pipeline.reproduce RUN`: rebuild a finished run from its record and say whether
it came out the same: bit for bit, or in its results, or neither.

RUN is a run id, `models:/<name>@<alias>` or `models:/<name>/<version>`. The run's code is
checked out at its commit in a temporary git worktree (its recorded diff applied when it ran
uncommitted changes); the data comes by its fingerprint (the DVC cache first, then the
download stage's sources); `pipeline.rebuild`, the run's own, trains with the run's config
and predicts the test digits. The weights' digest and every per-epoch metric are compared;
where they differ, the rebuild's test predictions are tested against the run's
`predictions.csv`. The verdict (`pipeline.reproduce.verdict`): `identical` (exit 0), `equivalent`
(exit 3) or `diverged` (exit 4), with each environment fact that differs either way. The
reproduction is an MLflow run of its own, tagged with the run it rebuilt, which gets the
verdict as a tag. Nothing else changes: not the working tree, params.yaml, dvc.lock or the
registry.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from pipeline import PipelineError, config, download
from pipeline.common import entry, project, provenance
from pipeline.reproduce import verdict
from pipeline.tracking import names, readback, record, runs, store

log = logging.getLogger(__name__)

PREDICTED = "test_predicted"  # rebuild's JSON: the label it predicts for each test digit


class ReproduceError(PipelineError):
    """What a run needs to be rebuilt is not here."""


def _git(*args: str, cwd: Path | None = None) -> str:
    """`git ARGS`'s output; a ReproduceError with git's own message if it fails."""
    return str(provenance.git(*args, cwd=cwd, timeout=120, errors=ReproduceError))


def require_commit(run: readback.Recorded) -> None:
    try:
        _git("cat-file", "-e", f"{run.commit}^{{commit}}")
    except ReproduceError:
        raise ReproduceError(
            f"run {run.run_id} was trained at commit {run.commit[:12]}, which this clone "
            f"lacks: fetch it (`git fetch origin {run.commit}`) and run this again"
        ) from None


def _dvc_cached(commit: str, raw: str) -> Path | None:
    """Where the DVC cache holds the download stage's output as of `commit`, if it lists it."""
    try:
        lock = yaml.safe_load(_git("show", f"{commit}:dvc.lock"))
        (md5,) = [out["md5"] for out in lock["stages"]["download"]["outs"] if out["path"] == raw]
    except (ReproduceError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    settings = configparser.ConfigParser()
    settings.read([".dvc/config", ".dvc/config.local"])
    cache = Path(".dvc") / settings.get("cache", "dir", fallback="cache")  # as DVC resolves it
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def find_data(run: readback.Recorded, scratch: Path) -> Path:
    """A file holding the run's data, by its fingerprint; the sources tried, if none does."""
    data = config.DataConfig(**{**run.config["data"], "fingerprint": run.fingerprint})
    raw = run.config["paths"]["raw"]
    tried = []
    for where, path in (
        ("the DVC cache", _dvc_cached(run.commit, raw)),
        ("the workspace", Path(raw)),
    ):
        if path is None or not path.is_file():
            tried.append(f"{where} ({path or 'the commit has no dvc.lock entry'}: not there)")
            continue
        try:
            download.verify(path, data.sha256, data.fingerprint)
            return path
        except download.DownloadError as err:
            tried.append(f"{where} ({err})")
    dest = scratch / "mnist.npz"
    cache = download.keras_cache()
    sources = (
        os.environ.get(download.SOURCE_ENV),
        str(cache) if cache.is_file() else "",
        data.url,
    )
    for source in filter(None, sources):
        try:
            download.obtain(dest, data, source=source, attempts=2)
            return dest
        except download.DownloadError as err:
            tried.append(str(err))
    raise ReproduceError(
        f"no source has the data of run {run.run_id} (fingerprint {run.fingerprint[:12]}): "
        f"tried {'; '.join(tried)}; point {download.SOURCE_ENV} at a copy of it"
    )


@contextmanager
def worktree(run: readback.Recorded, scratch: Path) -> Iterator[Path]:
    """The run's source, at its commit with its recorded diff, in a git worktree removed on
    the way out (an error, Ctrl-C or SIGTERM too)."""
    tree = scratch / "source"
    try:  # a stop while git adds it leaves a worktree too: removed below
        _git("worktree", "add", "--detach", "--quiet", str(tree), run.commit)
        if run.diff:
            patch = scratch / record.DIFF_ARTIFACT
            patch.write_text(run.diff)
            _git("apply", "--binary", str(patch), cwd=tree)
        yield tree
    finally:  # best effort: provenance.git never raises
        # A stop while git adds the worktree leaves it locked ("initializing"): --force twice
        # removes a locked one; where even that fails, unlock it so that prune forgets it.
        provenance.git("worktree", "remove", "--force", "--force", str(tree))
        provenance.git("worktree", "unlock", str(tree))
        shutil.rmtree(tree, ignore_errors=True)
        provenance.git("worktree", "prune")


def _backend(run: readback.Recorded) -> dict[str, str]:
    """This environment, on the Keras backend the run trained on (`KERAS_BACKEND`), with this
    project's XLA compilations (the rebuild's worktree has none: compiling again takes
    seconds and gives the same code)."""
    backend = run.environment.get("keras_backend")
    env = os.environ | {project.COMPILATIONS: project.compilations()}
    if not backend:
        return env
    if importlib.util.find_spec(backend) is None:
        raise ReproduceError(
            f"run {run.run_id} trained on Keras' {backend} backend, which is not installed "
            f"here: pip install {backend} (the project installs jax and tensorflow), then run "
            "this again"
        )
    return env | {"KERAS_BACKEND": backend}


def rebuild(
    tree: Path, run: readback.Recorded, raw: Path, scratch: Path, env: dict[str, str]
) -> dict:
    """Train in `tree` with its own `pipeline.rebuild` (in a process group of its own, stopped
    with this one, in `env`); return what it wrote."""
    settings, out = scratch / "config.yaml", scratch / "rebuilt.json"
    settings.write_text(yaml.safe_dump(run.config))
    command = [
        sys.executable,
        "-m",
        "pipeline.rebuild",
        str(settings),
        str(raw.resolve()),
        str(out),
    ]
    # Its progress goes to stderr with the log lines: stdout is the verdict.
    worker = subprocess.Popen(
        command, cwd=tree, stdout=sys.stderr, start_new_session=True, env=env
    )
    try:
        status = worker.wait()
    finally:
        entry.stop_group(worker, grace=10)
    if status:
        raise ReproduceError(f"rebuilding run {run.run_id} failed (exit {status}); see above")
    return json.loads(out.read_text())


def original_predictions(run: readback.Recorded, scratch: Path) -> pd.DataFrame | str:
    """The run's test predictions as evaluate logged them (`actual`, `predicted` per test
    digit), or why they are not there."""
    name = Path(run.config.get("paths", {}).get("predictions", "predictions.csv")).name
    try:
        path = store.connect().download_artifacts(run.run_id, name, str(scratch))
        return pd.read_csv(path, usecols=["actual", "predicted"])
    except (MlflowException, OSError):
        return (
            f"run {run.run_id} has no {name} artifact to test the rebuild's predictions "
            "against (evaluate logs it; this run predates that or was never evaluated)"
        )
    except ValueError as err:  # pandas' errors: not a CSV, or without those columns
        return f"run {run.run_id}'s {name} cannot be read ({err})"


def evidence(
    run: readback.Recorded, rebuilt: dict, raw: Path, scratch: Path
) -> tuple[verdict.Evidence | str, dict[str, float]]:
    """The rebuild's test predictions against the run's, or why they cannot be tested; and
    what to record of them (the rebuild's test accuracy, the test's p-value)."""
    with np.load(raw, allow_pickle=False) as arrays:
        labels = arrays["y_test"]
    if PREDICTED not in rebuilt:  # a rebuild.py from before it predicted: the contract allows
        return (
            f"the rebuild at commit {run.commit[:12]} predicts no test digits (its "
            "pipeline/rebuild.py predates that)"
        ), {}
    predicted = np.asarray(rebuilt[PREDICTED])
    found: dict[str, float] = {}
    if predicted.shape == labels.shape:
        found[names.TEST_ACCURACY] = float(np.mean(predicted == labels))
    table = original_predictions(run, scratch)
    if isinstance(table, str):
        return table, found
    actual = table["actual"].to_numpy()
    if len(actual) == len(labels) and not np.array_equal(actual, labels):
        return f"run {run.run_id}'s predictions are not of this data's test digits", found
    weighed = verdict.weigh(labels, table["predicted"].to_numpy(), predicted)
    if isinstance(weighed, verdict.Evidence):
        found[names.MCNEMAR_P_VALUE] = weighed.test.p_value
    return weighed, found


def judged(
    run: readback.Recorded, rebuilt: dict, raw: Path, scratch: Path, took: float
) -> verdict.Verdict:
    """The verdict on `rebuilt`, recorded with it in the open reproduction run."""
    record.document(run.config, record.CONFIG_ARTIFACT)
    record.environment(rebuilt["environment"])
    record.weights(rebuilt["weights_digest"])
    for row in rebuilt["history"]:
        record.epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    keys = sorted(k for k in rebuilt["history"][0] if k != "epoch")
    same, difference = verdict.compare(
        run.history(keys), run.weights_digest, rebuilt["history"], rebuilt["weights_digest"]
    )
    weighed, measured = evidence(run, rebuilt, raw, scratch)
    outcome = verdict.judge(same, difference, weighed)
    record.metrics({"rebuild_s": took} | measured)
    record.tags({names.VERDICT: outcome.name})
    return outcome


def reproduce(ref: str) -> verdict.Verdict:
    """Rebuild the run `ref` names, record the reproduction, print the verdict."""
    run = readback.read(readback.find(ref))
    require_commit(run)
    env = _backend(run)
    source = f"commit {run.commit[:12]}" + (" with its recorded diff" if run.diff else "")
    with tempfile.TemporaryDirectory(prefix="reproduce-") as folder:
        scratch = Path(folder)
        raw = find_data(run, scratch)
        tags = {names.REPRODUCES: run.run_id, names.COMMIT: run.commit}
        with runs.start(run.experiment, name=f"reproduce {run.name}", tags=tags) as reproduction:
            log.info(
                "rebuilding run %s from %s in MLflow run %s", run.run_id, source, reproduction
            )
            started = time.perf_counter()
            with worktree(run, scratch) as tree:
                rebuilt = rebuild(tree, run, raw, scratch, env)
            took = time.perf_counter() - started
            outcome = judged(run, rebuilt, raw, scratch, took)
        run.note(outcome.name, reproduction)
    changed = provenance.differences(run.environment, rebuilt["environment"])
    print(  # noqa: T201 (the verdict is the command's output)
        f"{outcome.name}: run {run.run_id} rebuilt from {source} in {took:.1f} s: "
        f"{outcome.detail}\n"
        + ("environment differs: " + "; ".join(changed) if changed else "environment: the same")
    )
    return outcome


EXIT_STATUS = """exit status: 0 identical (the same bits), 3 equivalent (other bits, results that
do not differ significantly on the test digits), 4 diverged (otherwise, or untestable),
1 an error, 2 a bad command line"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.reproduce",
        description="Rebuild a run from its record: is it the same, bit for bit or in effect?",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help=readback.FORMS)
    args = parser.parse_args(argv)
    code = reproduce(args.run).exit_code
    if code:
        sys.exit(code)


if __name__ == "__main__":
    entry.run(main)
