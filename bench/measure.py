"""The benchmark's measurements, each on a `harness.Project`: training speed against the
notebook and its peers, what DVC and a sweep add, peak memory, and what reproducing a run and
the checkpoint cache cost. Each returns the figures results.json keeps under its name."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml
from mlflow import MlflowClient

from bench.harness import CACHE_OFF, FRESH, NOTEBOOK, REPRO, TORCH, TRAIN_STEP, Project, median
from pipeline import DEFAULT_BACKEND

# Who trains the notebook's model, each in a fresh process on the same data: the script and
# the environment it runs with. PyTorch needs the `bench` extra; a peer not installed is left
# out, and said so. The notebook on TensorFlow is the baseline, as the book runs it.
BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX"}
PEERS: dict[str, tuple[Path, dict[str, str], str]] = {
    **{
        f"{who}, {name}": (script, {"KERAS_BACKEND": backend}, backend)
        for who, script in (("notebook", NOTEBOOK), ("pipeline", TRAIN_STEP))
        for backend, name in BACKENDS.items()
    },
    "PyTorch": (TORCH, {}, "torch"),
}
PIPELINE = f"pipeline, {BACKENDS[DEFAULT_BACKEND]}"  # on its default backend


def training_speed(project: Project, reps: int) -> dict:
    """Each peer's seconds per steady epoch (epochs 2-5, past tracing), first epoch, whole
    script and test accuracy, interleaved; `notebook` is the baseline (the notebook on
    TensorFlow), `pipeline` the pipeline on its default backend."""
    raw = str(project.path / "data/raw/mnist.npz")
    peers = {
        name: (script, env)
        for name, (script, env, package) in PEERS.items()
        if importlib.util.find_spec(package)
    }
    runs: dict[str, list[dict]] = {name: [] for name in peers}
    for _ in range(reps):
        for name, (script, env) in peers.items():
            args = [str(script)] + ([] if script == TRAIN_STEP else [raw])
            wall, _, output = project.python(*args, env=env)
            runs[name].append(json.loads(output.splitlines()[-1]) | {"script_s": wall})

    def summary(done: list[dict]) -> dict:
        epoch = median([t for run in done for t in run["epoch_s"][1:]])
        return {
            "epoch_s": epoch,
            "first_epoch_s": median([run["epoch_s"][0] for run in done]),
            "script_s": median([run["script_s"] for run in done]),
            "samples_per_s": done[0]["train_samples"] / epoch,
            "test_accuracy": [run["test_accuracy"] for run in done],
        }

    summaries = {name: summary(done) for name, done in runs.items()}
    return {
        "notebook": summaries["notebook, TensorFlow"],
        "pipeline": summaries[PIPELINE],
        "peers": summaries,
        "left_out": sorted(set(PEERS) - set(peers)),
    }


def pipeline_overhead(project: Project, reps: int) -> dict:
    """`dvc repro` of train and evaluate (data prepared) against the notebook's whole script,
    both on the pipeline's backend (JAX: the faster, the peer a user would pick), and the
    no-op `dvc repro`. Beside them, for what stands between the two: the same train and
    evaluate in one process (`python -m pipeline.sweep`, tracked, no DVC), and a bare
    `import keras`, which each stage's process pays. The same `dvc repro` on the other
    backend too."""
    raw = str(project.path / "data/raw/mnist.npz")
    on_jax = {"KERAS_BACKEND": DEFAULT_BACKEND}  # the faster peer, the stages' backend
    repro, script, noop, single, keras, other = [], [], [], [], [], []
    (backend,) = set(BACKENDS) - {DEFAULT_BACKEND}
    for _ in range(reps):
        # First: the default's run after it leaves its own outputs in place for the no-op.
        other.append(project.run(*REPRO, env={"KERAS_BACKEND": backend})[0])
        repro.append(project.run(*REPRO)[0])
        script.append(project.python(str(NOTEBOOK), raw, env=on_jax)[0])
        noop.append(project.run("dvc", "repro")[0])
        single.append(
            project.python(
                "-m", "pipeline.sweep", "hydra.run.dir=outputs/bench", CACHE_OFF, FRESH
            )[0]
        )
        keras.append(project.python("-c", "import keras", env=on_jax)[0])
    metrics = json.loads((project.path / "reports/metrics.json").read_text())
    return {
        "repro_train_evaluate_s": median(repro),
        "notebook_script_s": median(script),
        "noop_repro_s": median(noop),
        "repro_test_accuracy": metrics["test_accuracy"],
        "one_process_s": median(single),
        "import_keras_s": median(keras),
        "repro_other_backend": backend,
        "repro_other_backend_s": median(other),
    }


def memory(project: Project) -> dict:
    """Peak resident memory (MiB) of each stage, run as DVC runs it, and of the notebook."""
    peaks = {
        stage: project.python("-m", f"pipeline.{stage}")[1]
        for stage in ("download", "preprocess", "train", "evaluate")
    }
    peaks["notebook"] = project.python(str(NOTEBOOK), str(project.path / "data/raw/mnist.npz"))[1]
    return peaks


def sweep_overhead(project: Project, jobs: int) -> dict:
    """An N-job Hydra multirun of 1-epoch trainings against a 1-job one: the cost each extra
    job adds beyond its own training (TensorFlow and MLflow start-up cancel out)."""

    def sweep(seeds: str, folder: str) -> tuple[float, list[float]]:
        wall = project.python(
            "-m",
            "pipeline.sweep",
            "-m",
            "train.epochs=1",
            f"train.seed={seeds}",
            CACHE_OFF,
            FRESH,
            f"hydra.sweep.dir={folder}",
        )[0]
        return wall, [
            project.epoch_seconds(json.loads(record.read_text())["run_id"])
            for record in sorted((project.path / folder).glob("*/run.json"))
        ]

    one, _ = sweep("1", "multirun/bench-1")
    many, trained = sweep(",".join(str(s) for s in range(1, jobs + 1)), "multirun/bench-n")
    per_job = (many - one) / (jobs - 1)
    return {
        "jobs": jobs,
        "sweep_1_s": one,
        "sweep_n_s": many,
        "per_job_s": per_job,
        "training_per_job_s": median(trained),
        "overhead_per_job_s": per_job - median(trained),
    }


def replicates(project: Project, seeds: int = 10) -> dict:
    """The default configuration's noise as a user measures it, `python -m pipeline.sweep -m
    replicates=10` (no checkpoint cache: every epoch trained), against the seconds its runs
    spent in their epochs: what replicates cost beyond training them."""
    folder = "multirun/bench-replicates"
    wall = project.python(
        "-m",
        "pipeline.sweep",
        "-m",
        f"replicates={seeds}",
        CACHE_OFF,
        FRESH,
        f"hydra.sweep.dir={folder}",
    )[0]
    epochs = sum(
        project.epoch_seconds(json.loads(record.read_text())["run_id"])
        for record in (project.path / folder).glob("*/run.json")
    )
    return {"seeds": seeds, "sweep_s": wall, "epochs_s": epochs, "ratio": wall / epochs}


def reproduction(project: Project, reps: int) -> dict:
    """`python -m pipeline.reproduce RUN` against the train stage that made RUN
    (`python -m pipeline.train`, as DVC runs it), interleaved: what checking a result costs
    beyond training it again."""
    trains, rebuilds, verdicts = [], [], []
    for _ in range(reps):
        wall, _, output = project.python("-m", "pipeline.train")
        trains.append(wall)
        run_id = re.search(r"MLflow run ([0-9a-f]{32})", output)[1]  # type: ignore[index]
        wall, _, output = project.python("-m", "pipeline.reproduce", run_id)
        rebuilds.append(wall)
        verdicts += re.findall(r"^(identical|equivalent|diverged): ", output, re.MULTILINE)
    return {
        "train_stage_s": median(trains),
        "reproduce_s": median(rebuilds),
        "overhead_s": median(rebuilds) - median(trains),
        "verdicts": verdicts,
    }


def grid_sweep(project: Project, folder: str, *settings: str) -> tuple[float, float]:
    """`make sweep`'s 3x3 grid, one seed each: its wall time, and the sum of its jobs' runs."""
    wall = project.python(
        "-m",
        "pipeline.sweep",
        "-m",
        "grid=overfitting",
        "replicates=1",
        f"hydra.sweep.dir={folder}",
        FRESH,
        *settings,
    )[0]
    client = MlflowClient(f"sqlite:///{project.path / 'mlflow.db'}")
    runs = [
        client.get_run(json.loads(record.read_text())["run_id"]).info
        for record in (project.path / folder).glob("*/run.json")
    ]
    return wall, sum((run.end_time - run.start_time) / 1000 for run in runs)


def separately(project: Project) -> float:
    """The 3x3 grid's 9 jobs each run on its own (`python -m pipeline.sweep train.epochs=E
    train.batch_size=B`, no cache), as without a sweep: the sum of their wall times."""
    grid = yaml.safe_load((project.path / "conf/grid/overfitting.yaml").read_text())
    swept = grid["hydra"]["sweeper"]["params"]
    return sum(
        project.python(
            "-m",
            "pipeline.sweep",
            f"train.epochs={epochs}",
            f"train.batch_size={batch}",
            f"hydra.run.dir=outputs/alone-{epochs}-{batch}",
            CACHE_OFF,
            FRESH,
        )[0]
        for epochs in str(swept["train.epochs"]).split(",")
        for batch in str(swept["train.batch_size"]).split(",")
    )


def checkpoints(project: Project) -> dict:
    """What the checkpoint cache saves: the 3x3 overfitting sweep (`make sweep`) with it,
    without it, and its 9 jobs each run on its own (`separately`), all from scratch;
    `dvc exp run -S train.epochs=10` after the default run, against 10 epochs from scratch
    (other seeds, so no cache or DVC run cache serves it); what keeping each epoch costs."""

    cached, _ = grid_sweep(project, "multirun/grid-cached", "checkpoints.dir=.checkpoints-grid")
    uncached, jobs_in_sweep = grid_sweep(project, "multirun/grid-alone", CACHE_OFF)

    def exp(*settings: str) -> float:
        settings += (FRESH,)
        return project.run("dvc", "exp", "run", *(f"-S{setting}" for setting in settings))[0]

    scratch = exp("train.epochs=10", "train.seed=101", CACHE_OFF)
    exp("train.seed=102", "checkpoints.dir=.checkpoints-exp")  # the default 5 epochs
    extended = exp("train.epochs=10", "train.seed=102", "checkpoints.dir=.checkpoints-exp")
    keeping = json.loads(project.python(str(TRAIN_STEP), "--checkpoints")[2].splitlines()[-1])
    return {
        "sweep_cached_s": cached,
        "sweep_uncached_s": uncached,
        "sweep_job_runs_s": jobs_in_sweep,
        "sweep_jobs_separately_s": separately(project),
        "exp_10_after_5_s": extended,
        "exp_10_scratch_s": scratch,
        "write_s": median(keeping["write_s"]),
        "epoch_s": median(keeping["epoch_s"][1:]),
    }


def _sweep(project: Project, folder: str, *overrides: str) -> float:
    """The wall time of `python -m pipeline.sweep -m OVERRIDES`, jobs reused where done."""
    return project.python(
        "-m", "pipeline.sweep", "-m", *overrides, f"hydra.sweep.dir=multirun/{folder}"
    )[0]


def reuse(project: Project) -> dict:
    """Jobs done before, not done again: after `checkpoints()`, the 3x3 grid it trained run
    again (every job reused); a 4-job sweep stopped after 2 and run again, against its 2 jobs
    left run as a sweep of their own; seeds 1 to 10 of the default after seeds 1 to 5, against
    seeds 1 to 10 from scratch (other seeds, the same work). A stop is its first half run as a
    sweep of its own: the store then holds what a Ctrl-C after those jobs leaves."""
    again = _sweep(project, "reuse-grid", "grid=overfitting", "replicates=1")
    left_alone = _sweep(project, "reuse-left", "train.seed=301,302", FRESH)
    _sweep(project, "reuse-stopped", "train.seed=303,304")
    resumed = _sweep(project, "reuse-resumed", "train.seed=303,304,305,306")
    scratch = _sweep(project, "reuse-scratch", "train.seed=range(401,411)", FRESH)
    _sweep(project, "reuse-first-5", "train.seed=range(501,506)")
    extended = _sweep(project, "reuse-then-10", "train.seed=range(501,511)")
    return {
        "grid_again_s": again,
        "resumed_s": resumed,
        "left_alone_s": left_alone,
        "seeds_10_scratch_s": scratch,
        "seeds_10_after_5_s": extended,
    }
