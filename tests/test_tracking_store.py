"""Which store a run goes to: the project's own SQLite file, or MLFLOW_TRACKING_URI; created
once even when parallel jobs open it together."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.tracking import record, runs, store

from .helpers import ROOT
from .helpers.tracking import get_run


def test_store_is_the_project_sqlite_file_with_artifacts_beside_it(tmp_path):
    with runs.start("exp") as run_id:
        record.document({"a": 1}, "a.json")
    assert store.uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (tmp_path / "mlflow.db").is_file()
    assert get_run(run_id).info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert list((tmp_path / "mlartifacts").rglob("a.json"))


def test_experiments_open_in_the_training_view_of_the_ui():
    """MLflow 3's UI shows an experiment without `mlflow.experimentKind` as a GenAI one."""
    client = MlflowClient(store.uri())
    with runs.start("fresh"):
        pass
    older = client.create_experiment("older")  # as made before the mark, or by hand
    with runs.start("older"):
        pass
    for name in ("fresh", "older"):
        tags = client.get_experiment_by_name(name).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development", name
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"


def test_tracking_uri_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    assert store.uri() == f"sqlite:///{tmp_path}/other.db"


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


def _losing(times: int, message: str):
    """A write that loses `times` races (MlflowException `message`), then returns "written"."""
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise MlflowException(message)
        return "written"

    return write, calls


def test_a_write_that_loses_a_race_tries_again_until_it_wins():
    write, calls = _losing(store.ATTEMPTS - 1, "UNIQUE constraint failed: datasets.id")
    assert store.racing(write) == "written"
    assert len(calls) == store.ATTEMPTS


def test_a_write_that_loses_every_race_raises_the_last_loss():
    write, calls = _losing(store.ATTEMPTS, 'duplicate key value violates "registered_model_alias"')
    with pytest.raises(MlflowException, match="duplicate key value"):
        store.racing(write)
    assert len(calls) == store.ATTEMPTS


def test_any_other_mlflow_error_is_raised_at_once():
    write, calls = _losing(1, "RESOURCE_DOES_NOT_EXIST: no such model")
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        store.racing(write)
    assert len(calls) == 1


def test_credentials_in_the_tracking_uri_move_to_mlflows_own_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret-pw@127.0.0.1:5000/mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert store.uri() == "http://127.0.0.1:5000/mlflow"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000/mlflow"  # for children
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret-pw"


def test_credentials_set_in_mlflows_variables_win_over_the_uris(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:old@mlflow.example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "new")
    assert store.uri() == "https://mlflow.example.com"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "bob",
        "new",
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_one_line_saying_how_to_start_afresh(tmp_path, damage):
    db = tmp_path / "mlflow.db"
    if damage == "truncated":
        with runs.start("exp"):
            pass
        db.write_bytes(db.read_bytes()[:4096])
    else:
        db.write_bytes(os.urandom(8192))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipeline.common import entry\n"
            "def main(argv):\n"
            "    from pipeline.tracking import runs\n"
            "    with runs.start('exp'): pass\n"
            "entry.run(main)\n",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if "error:" in line]
    assert f"error: the MLflow store sqlite:///{db} cannot be read (" in line
    assert f"mv {db} {db}.damaged" in line
    assert "Traceback" not in done.stderr
