"""The speed and memory benchmark: the pipeline against the notebook it replaces, side by side.

    python -m bench [--reps 3] [--output bench/results.json]

Runs on real MNIST (MNIST_SOURCE, else the Keras cache or the canonical URL, as the download
stage does) in a throwaway git + DVC copy of this project, so the workspace and its MLflow
store are never touched. Figures are medians over `--reps` repetitions, taken interleaved,
and compared as ratios measured in the same run (this machine is shared and noisy). Prints a
table and writes `bench/results.json` and `bench/RESULTS.md`, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import yaml
from mlflow import MlflowClient

from bench.sandbox import ROOT, copy_project
from pipeline import DEFAULT_BACKEND

NOTEBOOK = ROOT / "bench" / "notebook.py"
TRAIN_STEP = ROOT / "bench" / "train_step.py"
TORCH = ROOT / "bench" / "torch_notebook.py"
MODEL = (784, 512, 10)
CACHE_OFF = "checkpoints.enabled=false"
REPRO = ("dvc", "repro", "-s", "-f", "train", "evaluate")


def flops_per_epoch(samples: int, layers: tuple[int, ...] = MODEL) -> dict[str, float]:
    """Floating-point work of one epoch of a Dense stack: the forward pass, plus the backward
    pass's weight gradients and the input gradients of every layer but the first ('real
    work'), and the common 3x-forward rule."""
    pairs = list(zip(layers, layers[1:], strict=False))
    forward = sum(2 * samples * a * b for a, b in pairs)
    input_grads = sum(2 * samples * a * b for a, b in pairs[1:])
    return {"real": 2 * forward + input_grads, "rule_of_3": 3 * forward}


def matmul_gflops(size: int = 4096, reps: int = 5) -> float:
    """Measured float32 matrix-multiply throughput: the faster of TensorFlow's and JAX's, the
    most this machine gives either backend."""
    import jax
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    on_jax = jax.jit(lambda x, y: x @ y)
    x, y = jax.numpy.asarray(a.numpy()), jax.numpy.asarray(b.numpy())
    products = (lambda: tf.linalg.matmul(a, b).numpy(), lambda: on_jax(x, y).block_until_ready())
    best = []
    for product in products:
        product()  # warm up
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            product()
            times.append(time.perf_counter() - started)
        best.append(statistics.median(times))
    return 2 * size**3 / min(best) / 1e9


# Started from a fresh, small interpreter: a child forked from this process would count this
# process's memory (TensorFlow included) in its own peak.
_PEAK = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
    "_, status, usage = os.wait4(p.pid, 0); print(f'PEAK_KIB {usage.ru_maxrss}'); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak resident MiB (of that process alone) and output of a command."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-S", "-c", _PEAK, *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wall = time.perf_counter() - started
    output, _, peak = done.stdout.rpartition("PEAK_KIB ")
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output[-3000:]}")
    return wall, int(peak) / 1024, output


class Project:
    """A throwaway git + DVC copy of this project, with its data prepared, and the checkpoint
    cache off (`checkpoints()` measures it): every timed training trains all its epochs."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "project"
        self.env = copy_project(self.path, skip=("tests/",))
        self.python("-m", "pipeline.config", CACHE_OFF)
        self.run("dvc", "repro")

    def run(self, *command: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
        return timed(list(command), self.path, self.env | (env or {}))

    def python(self, *args: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
        return self.run(sys.executable, *args, env=env)

    def epoch_seconds(self, run_id: str) -> float:
        """The seconds a run spent in its epochs (MLflow holds each epoch's wall time)."""
        client = MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")
        return sum(point.value for point in client.get_metric_history(run_id, "epoch_time_s"))


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


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
        epoch = _median([t for run in done for t in run["epoch_s"][1:]])
        return {
            "epoch_s": epoch,
            "first_epoch_s": _median([run["epoch_s"][0] for run in done]),
            "script_s": _median([run["script_s"] for run in done]),
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
    and the no-op `dvc repro`. Beside them, for what stands between the two: the same train
    and evaluate in one process (`python -m pipeline.sweep`, tracked, no DVC), and a bare
    `import keras`, which each stage's process pays. The same `dvc repro` on the other
    backend too."""
    raw = str(project.path / "data/raw/mnist.npz")
    repro, script, noop, single, keras, other = [], [], [], [], [], []
    (backend,) = set(BACKENDS) - {DEFAULT_BACKEND}
    for _ in range(reps):
        # First: the default's run after it leaves its own outputs in place for the no-op.
        other.append(project.run(*REPRO, env={"KERAS_BACKEND": backend})[0])
        repro.append(project.run(*REPRO)[0])
        script.append(project.python(str(NOTEBOOK), raw)[0])
        noop.append(project.run("dvc", "repro")[0])
        single.append(
            project.python("-m", "pipeline.sweep", "hydra.run.dir=outputs/bench", CACHE_OFF)[0]
        )
        keras.append(project.python("-c", "import keras")[0])
    metrics = json.loads((project.path / "reports/metrics.json").read_text())
    return {
        "repro_train_evaluate_s": _median(repro),
        "notebook_script_s": _median(script),
        "noop_repro_s": _median(noop),
        "repro_test_accuracy": metrics["test_accuracy"],
        "one_process_s": _median(single),
        "import_keras_s": _median(keras),
        "repro_other_backend": backend,
        "repro_other_backend_s": _median(other),
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
        "training_per_job_s": _median(trained),
        "overhead_per_job_s": per_job - _median(trained),
    }


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
        verdicts += re.findall(r"^(identical|diverged): ", output, re.MULTILINE)
    return {
        "train_stage_s": _median(trains),
        "reproduce_s": _median(rebuilds),
        "overhead_s": _median(rebuilds) - _median(trains),
        "verdicts": verdicts,
    }


def grid_sweep(project: Project, folder: str, *settings: str) -> tuple[float, float]:
    """`make sweep`'s 3x3 grid: its wall time, and the sum of its jobs' runs."""
    wall = project.python(
        "-m", "pipeline.sweep", "-m", "grid=overfitting", f"hydra.sweep.dir={folder}", *settings
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
        "write_s": _median(keeping["write_s"]),
        "epoch_s": _median(keeping["epoch_s"][1:]),
    }


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            name: metadata.version(name)
            for name in ("jax", "tensorflow", "keras", "mlflow", "dvc", "hydra-core", "numpy")
        },
    }


def targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """(figure, measured, target, met) for each target of the speed issues."""
    speed, floor = results["training"], results["floor"]
    overhead, peaks = results["pipeline"], results["memory"]
    sweep, rebuild = results["sweep"], results["reproduce"]
    ratio = speed["pipeline"]["epoch_s"] / speed["notebook"]["epoch_s"]
    to_floor = speed["pipeline"]["epoch_s"] / floor["floor_s"]
    repro = overhead["repro_train_evaluate_s"] / overhead["notebook_script_s"]
    worst = max((s for s in peaks if s != "notebook"), key=peaks.get)
    mem = peaks[worst] / peaks["notebook"]
    noop, per_job = overhead["noop_repro_s"], sweep["overhead_per_job_s"]
    return [
        ("training s/epoch, pipeline / notebook", f"{ratio:.2f}x", "<= 0.70x", ratio <= 0.7),
        *peer_targets(speed),
        ("training s/epoch / compute floor", f"{to_floor:.2f}x", "<= 2x", to_floor <= 2),
        ("dvc repro train+evaluate / notebook script", f"{repro:.2f}x", "<= 1.25x", repro <= 1.25),
        ("no-op dvc repro", f"{noop:.2f} s", "<= 1.0 s", noop <= 1.0),
        (
            "sweep: cost per extra job beyond training",
            f"{per_job:.2f} s",
            "<= 0.5 s",
            per_job <= 0.5,
        ),
        (f"peak memory, worst stage ({worst}) / notebook", f"{mem:.2f}x", "<= 1.2x", mem <= 1.2),
        (
            "reproduce RUN, beyond its train stage",
            f"{rebuild['overhead_s']:+.1f} s ({', '.join(rebuild['verdicts'])})",
            "<= +5 s, identical",
            rebuild["overhead_s"] <= 5 and set(rebuild["verdicts"]) == {"identical"},
        ),
    ] + checkpoint_targets(results["checkpoints"])


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
            "<= 1.0x",
            to_fastest <= 1,
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
    return "\n".join(lines + ["", *details(results)]) + "\n"


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
        f"| dvc repro train+evaluate / notebook script | "
        f"{overhead['repro_train_evaluate_s']:.1f} s / "
        f"{overhead['notebook_script_s']:.1f} s |",
        f"| train+evaluate in one process (`python -m pipeline.sweep`) / notebook script "
        f"| {overhead['one_process_s'] / overhead['notebook_script_s']:.2f}x "
        f"({overhead['one_process_s']:.1f} s) |",
        f"| `import keras` (paid by each stage's process) | {overhead['import_keras_s']:.1f} s |",
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
    return lines + checkpoint_details(results["checkpoints"])


def checkpoint_details(cache: dict) -> list[str]:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the sweep measured")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        print("preparing a copy of the project and its data ...", file=sys.stderr)  # noqa: T201
        project = Project(Path(folder))
        results = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "reps": args.reps,
            "machine": machine(),
        }
        results["training"] = training_speed(project, args.reps)
        work = flops_per_epoch(60000)
        peak = matmul_gflops()
        results["floor"] = {
            "matmul_gflops": peak,
            "gflop_real": work["real"] / 1e9,
            "gflop_rule_of_3": work["rule_of_3"] / 1e9,
            "floor_s": work["real"] / 1e9 / peak,
        }
        results["pipeline"] = pipeline_overhead(project, args.reps)
        results["memory"] = memory(project)
        results["sweep"] = sweep_overhead(project, args.jobs)
        results["reproduce"] = reproduction(project, args.reps)
        results["checkpoints"] = checkpoints(project)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    args.output.with_name("RESULTS.md").write_text(report)
    print(report)  # noqa: T201


if __name__ == "__main__":
    main()
