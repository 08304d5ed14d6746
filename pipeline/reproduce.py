"""`python -m pipeline.reproduce RUN`: rebuild a finished run from its record and say whether
it came out the same, bit for bit.

RUN is a run id, `models:/<name>@<alias>` or `models:/<name>/<version>`. The run's code is
checked out at its commit in a temporary git worktree (its recorded diff applied when it ran
uncommitted changes); the data comes by its fingerprint (the DVC cache first, then the
download stage's sources); `pipeline.rebuild`, the run's own, trains with the run's config.
Then the weights' digest and every per-epoch metric are compared: `identical` (exit 0) or
`diverged` (exit 1), with each environment fact that differs either way. The reproduction is
an MLflow run of its own, tagged with the run it rebuilt, which gets the verdict as a tag.
Nothing else changes: not the working tree, params.yaml, dvc.lock or the registry.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from pipeline import PipelineError, config, download, entry, provenance
from pipeline.tracking import names, readback, record, runs

log = logging.getLogger(__name__)


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
    finally:
        provenance.git("worktree", "remove", "--force", str(tree))  # best effort: never raises
        provenance.git("worktree", "prune")


def _backend(run: readback.Recorded) -> dict[str, str]:
    """This environment, on the Keras backend the run trained on (`KERAS_BACKEND`), with this
    project's XLA compilations (the rebuild's worktree has none: compiling again takes
    seconds and gives the same code)."""
    backend = run.environment.get("keras_backend")
    env = os.environ | {config.COMPILATIONS: config.compilations()}
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


def compare(history: dict[str, dict[int, float]], digest: str, rebuilt: dict) -> tuple[bool, str]:
    """Whether the rebuild equals the record, and how it differs first if not."""
    epochs = {step for steps in history.values() for step in steps}
    if len(epochs) != len(rebuilt["history"]):
        return False, f"{len(epochs)} epochs recorded, {len(rebuilt['history'])} rebuilt"
    for row in rebuilt["history"]:
        for key, value in row.items():
            was = history.get(key, {}).get(row["epoch"])
            if key != "epoch" and was != value:
                return False, f"epoch {row['epoch']} {key}: {was!r} recorded, {value!r} rebuilt"
    if digest != rebuilt["weights_digest"]:
        return (
            False,
            f"weights digest {digest[:12]} recorded, {rebuilt['weights_digest'][:12]} rebuilt",
        )
    count = f"{len(epochs)} epoch{'s' * (len(epochs) != 1)}"
    return True, f"weights digest {digest[:12]} and {count} of {', '.join(sorted(history))} equal"


def reproduce(ref: str) -> bool:
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
            record.document(run.config, record.CONFIG_ARTIFACT)
            record.environment(rebuilt["environment"])
            record.weights(rebuilt["weights_digest"])
            for row in rebuilt["history"]:
                record.epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
            keys = sorted(k for k in rebuilt["history"][0] if k != "epoch")
            same, detail = compare(run.history(keys), run.weights_digest, rebuilt)
            verdict = "identical" if same else "diverged"
            record.metrics({"rebuild_s": took})
            record.tags({names.VERDICT: verdict})
        run.note(verdict, reproduction)
    changed = provenance.differences(run.environment, rebuilt["environment"])
    print(  # noqa: T201 (the verdict is the command's output)
        f"{verdict}: run {run.run_id} rebuilt from {source} in {took:.1f} s: {detail}\n"
        + ("environment differs: " + "; ".join(changed) if changed else "environment: the same")
    )
    return same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.reproduce",
        description="Rebuild a run from its record: is it bit for bit the same?",
    )
    parser.add_argument("run", help=readback.FORMS)
    args = parser.parse_args(argv)
    if not reproduce(args.run):
        sys.exit(1)


if __name__ == "__main__":
    entry.run(main)
