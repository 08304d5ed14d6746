"""Hydra entry point: train and evaluate one configuration per job; a sweep is one parent run.

    python -m pipeline.sweep                         # one run of conf/ (+ any overrides)
    python -m pipeline.sweep -m train.epochs=5,10,20 train.batch_size=64,128,256
    python -m pipeline.sweep -m grid=overfitting     # that grid, kept in conf/grid/
    python -m pipeline.sweep -m replicates=3 train.epochs=5,10   # 3 seeds a configuration

Each job calls the cores the DVC stages call (`train.run`, `evaluate.run`) inside a child
MLflow run of the sweep's parent run, and writes its model, history, metrics and predictions
to its Hydra folder, beside its composed config (`.hydra/config.yaml`). A job done before (a
FINISHED run of its key, `pipeline.config.jobs`) is not run again: the parent counts that run
(`tracking.reuse`), so the same command resumes a stopped sweep and more seeds train only the
new ones; `reuse=false` runs all. The prepared arrays are brought up to date once, first. A
job that fails leaves a FAILED run and the others still run; at the end the parent gets the
sweep report (`pipeline.sweep.report`), the registry one version (the best configuration's
first seed, @champion only on evidence), and the sweep exits 1 if any job failed.
`replicates=N` sweeps `train.seed` too, before Hydra reads the command line.

Hydra's basic launcher runs the jobs one after another in this process: `engine.train` starts
each from a clean Keras state and its own seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from pipeline import PipelineError, Stopped, config, preprocess, search
from pipeline.common import entry, files, stops
from pipeline.config import jobs, replicates
from pipeline.sweep import completion, findings
from pipeline.sweep import report as sweep_report
from pipeline.sweep import text as sweep_text
from pipeline.tracking import names, reuse, runs, store, sweeps
from pipeline.tracking.sweeps import Sweep

log = logging.getLogger(__name__)

JOB_OUTPUTS = ("model", "history", "environment", "metrics", "predictions", "plots")  # per job


def _base(hydra_config: DictConfig) -> config.Config:
    """The sweep's own config (conf/ with the overrides that do not sweep), validated."""
    keys = [str(key) for key in hydra_config if key != "hydra"]
    plain = OmegaConf.to_container(OmegaConf.masked_copy(hydra_config, keys), resolve=True)
    return config.validate(plain, "conf/ with the command line's overrides")


def _overrides(hydra_node: DictConfig) -> tuple[dict[str, str], list[str]]:
    """The sweep's overrides by key (`hydra.sweeper.params` from config, then the command
    line, which wins), and the keys that sweep over several values."""
    lines = [f"{key}={value}" for key, value in (hydra_node.sweeper.params or {}).items()]
    lines += list(hydra_node.overrides.task)
    last = {o.get_key_element(): o for o in OverridesParser.create().parse_overrides(lines)}
    given = {key: str(o.input_line).partition("=")[2] for key, o in last.items()}
    return given, [key for key, o in last.items() if o.is_sweep_override()]


def _prepared(hydra_config: DictConfig) -> None:
    with preprocess.up_to_date(_base(hydra_config)):
        pass


def _open(hydra_config: DictConfig) -> None:
    base = _base(hydra_config)
    given, swept = _overrides(hydra_config.hydra)
    swept += search.checked(hydra_config.hydra, base.train.seed)  # a search's own keys
    # A stop waits for the store's first client (a second): no MLflow module half imported.
    with preprocess.up_to_date(base), stops.deferred(), store.lock():
        store.connect()  # meanwhile: a store's first client takes a while
    folder = Path(hydra_config.hydra.sweep.dir).resolve()
    name = "sweep " + " ".join(f"{key}={value}" for key, value in given.items())
    with stops.deferred():
        sweep = sweeps.open_sweep(base.tracking.experiment, name, given, swept, folder)
    log.info(
        "sweep over %s: parent MLflow run %s, job folders in %s",
        ", ".join(swept) or "nothing",
        sweep.parent_run_id,
        folder,
    )


def _close(hydra_config: DictConfig) -> None:
    folder = Path(hydra_config.hydra.sweep.dir).resolve()
    parent = Sweep.read(folder).parent_run_id
    try:
        if (folder / search.OUTCOME).exists():  # a search's: its own report, its winner
            from pipeline.search import report as search_report

            report = search_report.publish(parent, folder)
        else:
            report = sweep_report.publish(parent, folder)
        if report.best is not None and report.chosen_run is not None:
            _register(_base(hydra_config), report.best, report.chosen_run)
    except Exception as err:
        sweeps.end(parent, "FAILED")  # never left RUNNING (or kept for later: tracking.ends)
        if isinstance(err, MlflowException):
            raise store.TrackingError(
                f"the MLflow store {store.uri()} failed while the sweep's report was "
                f"published: {store.why(err)}; its jobs' runs are there, rerun "
                f"`python -m pipeline.sweep.report {parent}` once it answers"
            ) from None
        raise
    failed = sweep_text.failed(report.rows)
    sweeps.end(parent, "FAILED" if failed else "FINISHED")
    if failed:
        raise PipelineError(
            f"{failed} of {len(report.rows)} jobs failed: their errors are above, in "
            f"{folder}/<job>/sweep.log and on their FAILED runs in MLflow"
        )


def _register(base: config.Config, best: findings.Best, run_id: str) -> None:
    """A sweep adds one version to the registry: its best configuration's first seed, which
    takes @champion only on evidence (`registry.register`); the other jobs keep their models
    on their runs. A run registered before (a reused job) is not registered again."""
    if version := reuse.registered(run_id):
        log.info("%s (run %s) is registered already, as %s", best.label, run_id, version)
        return
    from pipeline.tracking import registry  # Keras: only once there is a model to register

    accuracies = best.runs[names.VAL_ACCURACY].astype(float).tolist()
    chosen = best.runs.loc[best.runs["run_id"] == run_id].iloc[0]
    decision = registry.register(
        base.tracking.registered_model,
        reuse.model_uri(run_id) or f"runs:/{run_id}/{registry.MODEL_NAME}",
        net=None,
        validation=registry.validation(Path(base.paths.prepared), base.train.validation_split),
        replicates=accuracies if len(accuracies) > 1 else None,
        level=base.tracking.promotion_level,
        family=str(chosen["family"]) if "family" in chosen else base.model.family,
        val_accuracy=float(chosen[names.VAL_ACCURACY]),
    )
    log.info(
        "registered %s (run %s) as %s version %d: %s",
        best.label,
        run_id,
        base.tracking.registered_model,
        decision.version,
        decision.line,
    )


def _or_exit(step: Callable[[DictConfig], None], hydra_config: DictConfig) -> None:
    """Hydra turns an exception in a callback into a warning; a sweep that cannot start or
    finish must stop with an error instead."""
    try:
        step(hydra_config)
    except PipelineError as err:
        log.error("error: %s", err)
        raise SystemExit(1) from None
    except Exception:
        log.exception("the sweep failed")
        raise SystemExit(1) from None


class SweepCallback(Callback):
    """Hydra's hooks around the jobs (registered in conf/config.yaml, `hydra.callbacks`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _or_exit(_prepared, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _or_exit(_open, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # A stop waits for the report and the registry's version to be whole (a few seconds):
        # cut inside a store's transaction, they would leave it locked for the parent's end.
        with stops.deferred():
            _or_exit(_close, config)


def _job(raw: DictConfig, sweep: Sweep | None) -> float | None:
    node = HydraConfig.get()
    out = Path(node.runtime.output_dir)
    overrides = list(node.overrides.task)
    swept = sweep.swept if sweep else []
    name = " ".join(o for o in overrides if o.partition("=")[0] in swept) or None
    described = f"conf/ with {' '.join(overrides) or 'no overrides'}"
    done = _done(raw, described)
    if done is not None:
        log.info("%s", done.line(name or " ".join(overrides) or "conf/ as it is"))
        if sweep:
            reuse.count_reused(sweep.parent_run_id, done, name or "")
        _write_record(out, done.run_id, done.model_uri, reused=True)
        return done.val_accuracy
    from pipeline import evaluate, train  # Keras (seconds) only once a job runs

    entry.settle()  # at the first job, after Keras' import

    experiment = sweep.experiment if sweep else str(raw.tracking.experiment)
    tags = {"hydra_output_dir": str(out), "hydra_overrides": " ".join(overrides)}
    parent = sweep.parent_run_id if sweep else None
    with runs.start(
        experiment, parent_id=parent, name=name, tags=tags, system_metrics=True
    ) as run_id:
        # Validated inside the run: a job with a bad value is a FAILED run of the sweep.
        cfg = config.validate(OmegaConf.to_container(raw, resolve=True), described)
        paths = dataclasses.replace(
            cfg.paths,
            **{key: str(out / Path(getattr(cfg.paths, key)).name) for key in JOB_OUTPUTS},
        )
        log.info("MLflow run %s, outputs in %s", run_id, out)
        net, history, model_uri = train.run(cfg, paths, register=False)
        _write_record(out, run_id, model_uri)
        metrics = evaluate.run(paths, net, history, cfg.train.validation_split)
    if first := reuse.mark_duplicates(run_id):  # reuse=false, or two sweeps raced for it
        say = log.warning if cfg.reuse else log.info
        say("run %s repeats run %s: tagged %s", run_id, first, names.DUPLICATE_OF)
    return metrics.get("val_accuracy")


def _done(raw: DictConfig, described: str) -> reuse.Done | None:
    """The FINISHED run of this job's key, to count instead of training again; None when there
    is none, `reuse=false` asks for a fresh run, or the config is bad (its FAILED run says)."""
    try:
        cfg = config.validate(OmegaConf.to_container(raw, resolve=True), described)
    except config.ConfigError:
        return None
    return reuse.find(cfg.tracking.experiment, jobs.key_for(cfg)) if cfg.reuse else None


def _write_record(folder: Path, run_id: str, model_uri: str, reused: bool = False) -> None:
    """`run.json`: the job's run and model URI, for people to find it from the job's folder."""
    record = {"run_id": run_id, "model_uri": model_uri, "tracking_uri": store.uri()}
    text = json.dumps(record | {"reused": reused}, indent=2) + "\n"
    files.write_text(folder / "run.json", text, mode=0o600)  # names the store


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def main(raw: DictConfig) -> float | None:
    """One job: its validation accuracy is the objective, for sweepers that optimise."""
    entry.environment()  # here, not only in __main__: a Ray or SLURM worker runs just this
    entry.quiet()  # Hydra has set up the job's logging
    node = HydraConfig.get()
    sweep = None
    try:
        # Where the sweep was started: a Ray worker starts jobs in a folder of its own.
        with contextlib.chdir(node.runtime.cwd):
            if node.mode == RunMode.MULTIRUN:
                sweep = Sweep.read(Path(node.sweep.dir))
            return _job(raw, sweep)
    except Exception as err:
        if isinstance(err, PipelineError):
            log.error("error: %s", err)
        else:
            log.exception("job failed")
        if sweep is None:
            raise SystemExit(1) from None
        return None  # its run is FAILED; the sweep goes on and exits 1 at the end


def _stopped(err: KeyboardInterrupt | Stopped) -> None:
    """Ctrl-C or SIGTERM: the running job's run is KILLED already (`store.start`); the
    sweep's parent run is KILLED too, never left RUNNING. One line, whenever it came."""
    by, status = stops.stopped_by(err)
    try:
        ended = sweeps.end_own(runs.KILLED)
    except Exception as failed:  # the store is away: the next sweep ends it (runs.end_orphans)
        log.error("sweep stopped by %s; its parent run stays RUNNING for now: %s", by, failed)
        raise SystemExit(status) from None
    done = "its parent run and the job running are KILLED; the jobs done so far keep their runs"
    if not ended:
        done = "nothing half-written was kept, and no run it made is left RUNNING"
    log.error("sweep stopped by %s: %s", by, done)
    raise SystemExit(status) from None


def command() -> None:
    """`python -m pipeline.sweep`: the command line, then Hydra's sweep, one line on a stop."""
    entry.environment()
    stops.handle()
    try:
        completion.handle(sys.argv[1:])  # bash's tab completion (docs/sweeps.md)
        sys.argv[1:] = replicates.expand(sys.argv[1:])  # before Hydra reads it
        main()
    except PipelineError as err:  # the command line, before any run
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(1) from None
    except (KeyboardInterrupt, Stopped) as err:
        _stopped(err)
    finally:
        entry.skip_final_gc()
