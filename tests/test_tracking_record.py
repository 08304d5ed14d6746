"""What a run holds: the whole config with its provenance, and the data as a run input."""

from __future__ import annotations

import subprocess

import mlflow
import yaml

from pipeline import config
from pipeline.tracking import record, runs

from .helpers.tracking import get_run


def test_config_is_logged_whole_with_source_tags(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-owls")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    cfg = config.from_conf()
    with runs.start("exp") as run_id:
        record.configuration(cfg)
    run = get_run(run_id)
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
    assert get_run(dirty_id).data.tags["git_dirty"] == "True"
    assert run.data.tags["dvc_exp_name"] == "brisk-owls"
    assert run.data.tags["dvc_exp_baseline_rev"] == "abc123"
    logged = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml")
    assert yaml.safe_load(logged) == config.to_dict(cfg)


def test_dataset_is_a_run_input_with_digest_and_fingerprint(tiny_data):
    x, y = tiny_data
    with runs.start("exp") as run_id:
        record.data(x, y, {"fingerprint": "f" * 64}, source="data/prepared", context="training")
    run = get_run(run_id)
    (entry,) = run.inputs.dataset_inputs
    assert entry.dataset.name == "mnist-training" and entry.dataset.digest == "f" * 8
    assert entry.tags[0].value == "training"
    assert run.data.tags["data_fingerprint"] == "f" * 64
