"""Run lifecycle and contents against a real MLflow SQLite store in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipeline import config, train
from pipeline.tracking import record, registry, runs, store, sweeps

from .helpers import ROOT


def _run(run_id: str):
    return MlflowClient(store.uri()).get_run(run_id)


def test_store_is_the_project_sqlite_file_with_artifacts_beside_it(tmp_path):
    with runs.start("exp") as run_id:
        record.document({"a": 1}, "a.json")
    assert store.uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (tmp_path / "mlflow.db").is_file()
    assert _run(run_id).info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert list((tmp_path / "mlartifacts").rglob("a.json"))


def test_tracking_uri_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    assert store.uri() == f"sqlite:///{tmp_path}/other.db"


def test_a_run_that_raises_is_failed_with_the_reason():
    with pytest.raises(RuntimeError, match="loss is nan"):
        with runs.start("exp") as run_id:
            raise RuntimeError("loss is nan")
    run = _run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: loss is nan"


def test_evaluate_adds_to_the_run_train_opened():
    with runs.start("exp") as run_id:
        for epoch in (1, 2, 3):
            record.epoch(epoch, {"accuracy": epoch / 10})
    with runs.start("exp", run_id=run_id) as resumed:
        record.metrics({"test_accuracy": 0.97})
    assert resumed == run_id
    run = _run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.97
    history = MlflowClient(store.uri()).get_metric_history(run_id, "accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_an_inherited_mlflow_run_id_never_resumes_that_run(monkeypatch):
    with runs.start("exp") as first:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", first)
    with runs.start("exp") as second:
        pass
    assert second != first


def test_resuming_an_unknown_run_names_the_store_and_the_fix():
    with runs.start("exp"):
        pass
    with pytest.raises(store.TrackingError) as caught:
        with runs.start("exp", run_id="0" * 32):
            pass
    message = str(caught.value)
    assert "0" * 32 in message and store.uri() in message and "dvc repro -f train" in message


def test_config_is_logged_whole_with_source_tags(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-owls")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    cfg = config.defaults()
    with runs.start("exp") as run_id:
        record.configuration(cfg)
    run = _run(run_id)
    assert run.data.params == {k: str(v) for k, v in config.flatten(cfg).items()}
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.data.tags["git_dirty"] == "False"
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(["git", "add", "dvc.yaml"], check=True)
    with runs.start("exp") as dirty_id:
        record.configuration(cfg)
    assert _run(dirty_id).data.tags["git_dirty"] == "True"
    assert run.data.tags["dvc_exp_name"] == "brisk-owls"
    assert run.data.tags["dvc_exp_baseline_rev"] == "abc123"
    logged = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml")
    assert yaml.safe_load(logged) == config.to_dict(cfg)


def test_dataset_is_a_run_input_with_digest_and_fingerprint(tiny_data):
    x, y = tiny_data
    with runs.start("exp") as run_id:
        record.data(x, y, {"fingerprint": "f" * 64}, source="data/prepared", context="training")
    run = _run(run_id)
    (entry,) = run.inputs.dataset_inputs
    assert entry.dataset.name == "mnist-training" and entry.dataset.digest == "f" * 8
    assert entry.tags[0].value == "training"
    assert run.data.tags["data_fingerprint"] == "f" * 64


def test_logged_model_loads_back_and_predicts_the_same(tiny_cfg, tiny_data, tmp_path):
    from pipeline import model

    net = model.build(tiny_cfg.model, tiny_cfg.train)
    with runs.start("exp"):
        uri = registry.log_model(net)
    loaded = mlflow.keras.load_model(uri)
    x = tiny_data[0][:4]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path))
    pins = (tmp_path / folder / "requirements.txt").read_text().split()
    assert any(p.startswith("tensorflow==") for p in pins)
    assert any(p.startswith("keras==") for p in pins)
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs.inputs[0].shape == (-1, 784)


def test_parallel_jobs_on_a_fresh_store_all_log(tmp_path):
    """Four processes open the store at once, as `dvc queue start -j 4` does on a fresh clone."""
    script = (
        "from pipeline.tracking import record, runs\n"
        "with runs.start('exp'):\n"
        "    record.metrics({'test_accuracy': 0.9})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["DVC_ROOT"] = str(tmp_path)
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [job.communicate(timeout=120)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0] * 4, errors
    logged = MlflowClient(store.uri()).search_runs(
        [MlflowClient(store.uri()).get_experiment_by_name("exp").experiment_id]
    )
    assert len(logged) == 4 and all(r.info.status == "FINISHED" for r in logged)


def test_champion_alias_moves_only_to_a_better_validation_accuracy(tiny_cfg, tiny_data):
    net, _ = train.train(tiny_cfg, *tiny_data, verbose=0)
    registered, run_ids = [], []
    for val_accuracy in (0.90, 0.95, 0.93, None):
        with runs.start("exp") as run_id:
            registered.append(registry.register("digits", registry.log_model(net), val_accuracy))
        run_ids.append(run_id)
    assert registered == [(1, True), (2, True), (3, False), (4, False)]
    champion = MlflowClient(store.uri()).get_model_version_by_alias("digits", registry.CHAMPION)
    assert int(champion.version) == 2 and champion.run_id == run_ids[1]


def test_a_sweep_is_a_parent_run_and_a_record_its_jobs_read(tmp_path):
    folder = tmp_path / "multirun" / "x"
    sweep = sweeps.open_sweep(
        "exp", "sweep train.epochs=1,2", {"train.epochs": "1,2"}, ["train.epochs"], folder
    )
    assert sweeps.Sweep.read(folder) == sweep
    assert (sweep.experiment, sweep.swept) == ("exp", ["train.epochs"])
    parent = _run(sweep.parent_run_id)
    assert parent.info.status == "RUNNING" and parent.info.run_name == "sweep train.epochs=1,2"
    assert parent.data.tags[sweeps.SWEEP_TAG] == "parent"
    assert parent.data.tags["sweep_dir"] == str(folder)
    assert parent.data.params == {"train.epochs": "1,2"}
    assert sweeps.latest("exp") == sweep.parent_run_id


def test_a_stopped_sweep_ends_its_own_parent_runs_and_no_one_elses(tmp_path):
    mine = sweeps.open_sweep("exp", "mine", {}, [], tmp_path / "mine").parent_run_id
    client = store.connect()
    other = client.create_run(
        client.get_experiment_by_name("exp").experiment_id,
        tags={sweeps.SWEEP_TAG: "parent", **runs.owner(), "pipeline.pid": "1"},
    ).info.run_id
    assert sweeps.end_own(runs.KILLED) == [mine]
    assert _run(mine).info.status == "KILLED"
    assert _run(other).info.status == "RUNNING"
