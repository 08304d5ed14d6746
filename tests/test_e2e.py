"""The whole pipeline on real MNIST, in a throwaway git + DVC copy of this project.

The project is trained once a session (conftest's `project`); each test works in a copy of its
own (`lab`), so that any subset of the tests passes, in any order. MNIST comes from the
canonical URL, or from MNIST_SOURCE when set (CI and offline machines).
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import config

from .helpers.console import alarming
from .helpers.project import Project

pytestmark = pytest.mark.e2e
STAGES = ("check_params", "download", "preprocess", "train", "evaluate")


def _ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def _load_model(lab: Project, alias: str | None = None, version: str | None = None):
    """Model mnist, by alias or version, from the lab's registry, as MLflow loads it.
    Not by a models:/ URI: that resolves in MLflow's process-wide store, which setting would
    leave to every test after this one."""
    client, _ = lab.runs()
    if alias is not None:
        version = client.get_model_version_by_alias("mnist", alias).version
    return mlflow.keras.load_model(client.get_model_version_download_uri("mnist", version))


def test_exp_run_composes_params_and_runs_every_stage(lab):
    assert _ran(lab.output) == set(STAGES)
    params = yaml.safe_load((lab.path / "params.yaml").read_text())
    assert params == config.compose(["train.epochs=1"])
    lock = yaml.safe_load((lab.path / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["epochs"] == 1


def test_metrics_show_test_accuracy_and_the_overfitting_gap(lab):
    metrics = json.loads((lab.path / "reports/metrics.json").read_text())
    assert 0.93 < metrics["test_accuracy"] < 0.99
    assert metrics["overfitting_gap"] == pytest.approx(
        metrics["train_accuracy"] - metrics["test_accuracy"]
    )
    # After one epoch Keras' running mean lags behind the model it describes.
    assert metrics["train_accuracy_evaluated"] >= metrics["train_accuracy"]
    assert metrics["overfitting_gap_evaluated"] == pytest.approx(
        metrics["train_accuracy_evaluated"] - metrics["test_accuracy"]
    )
    assert (metrics["best_val_loss_epoch"], metrics["overfitting_onset_epoch"]) == (1, None)
    assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
    shown = lab.sh("dvc", "metrics", "show", "--json")
    assert "test_accuracy" in shown
    assert "test accuracy" in lab.output and "overfitting gap" in lab.output
    assert alarming(lab.output) == [] and "epoch 1/1 in " in lab.output


def test_one_mlflow_run_holds_params_curves_gap_tags_and_model(lab):
    client, runs = lab.runs()
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1" and run.data.params["train.batch_size"] == "128"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "train_val_gap"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1], name
    rates = client.get_metric_history(run.info.run_id, "learning_rate")
    assert [(m.step, m.value) for m in rates] == [(1, 0.001)]
    metrics = json.loads((lab.path / "reports/metrics.json").read_text())
    assert run.data.metrics["overfitting_gap"] == pytest.approx(metrics["overfitting_gap"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    tags = run.data.tags
    assert tags["data_fingerprint"] == config.from_conf().data.fingerprint
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["git_dirty"] in ("True", "False")
    assert tags.get("dvc_exp_name"), "the DVC experiment name is not on the run"
    assert tags["env.keras_backend"] == "jax", "not the default backend"
    assert list((lab.path / ".jax-cache").iterdir()), "XLA's compilations were not kept"
    datasets = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(datasets) == ["testing", "training"]
    assert {d.digest for d in datasets.values()} == {tags["data_fingerprint"][:8]}
    assert json.loads(datasets["training"].profile)["features_shape"] == [60000, 784]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "history.csv",
        "metrics.json",
        "confusion_matrix.json",
        "plots",
    } <= artifacts
    pictures = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert pictures == {
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/misclassified.png",
    }
    version = client.get_model_version_by_alias("mnist", "champion")
    assert version.run_id == run.info.run_id


def test_the_training_run_has_mlflows_own_system_metrics(lab):
    client, (run,) = lab.runs()
    for name in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        samples = client.get_metric_history(run.info.run_id, f"system/{name}")
        assert len(samples) >= 2, f"{name}: {len(samples)} samples of a 1-epoch training"
        assert max(m.value for m in samples) > 0, name  # a first CPU sample may read 0


def test_logged_model_predicts_a_7_for_the_first_test_digit(lab):
    loaded = _load_model(lab, alias="champion")
    first = np.load(lab.path / "data/prepared/x_test.npy", mmap_mode="r")[:1]
    assert int(loaded.predict(np.asarray(first), verbose=0).argmax()) == 7


def test_second_repro_reruns_nothing(lab):
    output = lab.sh("dvc", "repro")
    assert _ran(output) == set()
    assert "Data and pipelines are up to date" in output


@pytest.mark.parametrize(
    ("module", "stale"),
    [
        ("pipeline/analysis/plots.py", ["evaluate"]),
        ("pipeline/tracking/runs.py", ["train", "evaluate"]),
    ],
)
def test_an_edit_to_a_module_stales_exactly_the_stages_that_run_it(lab, module, stale):
    edited = lab.path / module
    original = edited.read_text()
    edited.write_text(original + "# an edit\n")
    try:
        status = json.loads(lab.sh("dvc", "status", "--json"))
    finally:
        edited.write_text(original)
    assert sorted(status) == sorted(stale)
    assert "up to date" in lab.sh("dvc", "status")


def test_a_key_no_stage_reads_is_still_refused(lab):
    done = subprocess.run(
        ["dvc", "exp", "run", "-S", "+typo=5"],
        cwd=lab.path,
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "unknown key 'typo'" in done.stdout + done.stderr
    assert _ran(done.stdout) == {"check_params"}


def test_changing_epochs_reruns_only_train_and_evaluate(lab):
    _, before = lab.runs()
    lab.sh(sys.executable, "-m", "pipeline.config", "train.epochs=5")
    output = lab.sh("dvc", "repro")
    assert _ran(output) == {"check_params", "train", "evaluate"}
    client, runs = lab.runs()
    assert _ids(runs[:-1]) == _ids(before), "not exactly one run more"
    assert runs[-1].data.params["train.epochs"] == "5"
    assert len(client.get_metric_history(runs[-1].info.run_id, "accuracy")) == 5


def test_predict_reads_pngs_of_real_digits_as_the_notebook_predicts_them(lab, tmp_path):
    with np.load(lab.path / "data/raw/mnist.npz") as mnist:
        digits = mnist["x_test"][:10]
    pictures = [tmp_path / f"test-{i}.png" for i in range(10)]
    for picture, pixels in zip(pictures, digits, strict=True):
        Image.fromarray(pixels).save(picture)
    scanned = tmp_path / "seven-on-paper.png"  # black on white, 10 times the size
    Image.fromarray(255 - digits[0]).resize((280, 280), Image.Resampling.BILINEAR).save(scanned)
    (tmp_path / "empty.png").write_bytes(b"")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.predict",
            *map(str, pictures),
            str(tmp_path / "empty.png"),
            str(scanned),
            "--model",
            "models/model.keras",
        ],
        cwd=lab.path,
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "empty.png: not an image" in done.stderr
    assert alarming(done.stderr) == [], "progress bars or alarms beside the digits"
    predicted = [int(line.split()[1]) for line in done.stdout.splitlines()]
    notebook = pd.read_csv(lab.path / "reports/predictions.csv")["predicted"]
    assert predicted[:10] == notebook[:10].tolist()
    assert predicted[0] == 7 and predicted[10] == 7


def _ids(runs) -> list[str]:
    return [run.info.run_id for run in runs]


def test_early_stopping_keeps_registers_and_evaluates_the_best_epoch(tmp_path):
    copy = Project.copy(tmp_path / "project")
    overrides = ("train.epochs=30", "train.early_stopping.enabled=true")
    copy.sh(sys.executable, "-m", "pipeline.config", *overrides, "train.early_stopping.patience=2")
    copy.sh("dvc", "repro")
    history = pd.read_csv(copy.path / "reports/history.csv")
    metrics = json.loads((copy.path / "reports/metrics.json").read_text())
    assert len(history) < 30, "it never stopped"
    (kept,) = history.loc[history["weights_kept"] == 1].itertuples()
    assert kept.val_loss == history["val_loss"].min()
    assert (metrics["kept_epoch"], metrics["epochs_trained"]) == (kept.epoch, len(history))
    assert metrics["val_accuracy"] == kept.val_accuracy

    client, (run,) = copy.runs()
    version = client.get_model_version_by_alias("mnist", "champion")
    assert float(version.tags["val_accuracy"]) == pytest.approx(kept.val_accuracy)
    net = _load_model(copy, version=version.version)
    x = np.load(copy.path / "data/prepared/x_train.npy")[54000:]
    y = np.eye(10)[np.load(copy.path / "data/prepared/y_train.npy")[54000:]]
    val_loss, _ = net.evaluate(x, y, batch_size=128, verbose=0)
    assert val_loss == pytest.approx(kept.val_loss, rel=1e-5)  # the kept epoch's weights
    assert run.data.metrics["kept_epoch"] == kept.epoch
