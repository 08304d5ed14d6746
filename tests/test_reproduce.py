"""`python -m pipeline.reproduce`: the comparison, where the data comes from, and each bad
input as one clear line. Real rebuilds on real MNIST are in test_reproducible.py."""

from __future__ import annotations

import subprocess

import pytest

from pipeline import config, reproduce
from pipeline.tracking import names, readback, store

from .helpers.tracking import recorded_run


def _config(url: str = "file:///nowhere/mnist.npz", **data: str) -> dict:
    plain = config.to_dict(config.defaults())
    plain["data"] |= {"url": url, **data}
    return plain


def _provenance(commit: str, fingerprint: str = "f" * 64) -> dict[str, str]:
    return {
        names.COMMIT: commit,
        names.DIRTY: "False",
        names.WEIGHTS: "0" * 64,
        names.FINGERPRINT: fingerprint,
        "env.python": "3.11.7",
    }


@pytest.fixture
def repo(tmp_path, monkeypatch) -> str:
    """The test's folder as a git repo with one commit, and the working directory; its
    commit."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNIST_SOURCE", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip()


def test_identical_only_when_every_epoch_metric_and_the_weights_match():
    history = {"loss": {1: 0.5, 2: 0.25}, "val_loss": {1: 0.6, 2: 0.4}}
    rows = [
        {"epoch": 1, "loss": 0.5, "val_loss": 0.6},
        {"epoch": 2, "loss": 0.25, "val_loss": 0.4},
    ]
    rebuilt = {"weights_digest": "a" * 64, "history": rows}
    assert reproduce.compare(history, "a" * 64, rebuilt) == (
        True,
        f"weights digest {'a' * 12} and 2 epochs of loss, val_loss equal",
    )
    off = {**rebuilt, "history": [rows[0], {**rows[1], "val_loss": 0.4000000000000001}]}
    assert reproduce.compare(history, "a" * 64, off) == (
        False,
        "epoch 2 val_loss: 0.4 recorded, 0.4000000000000001 rebuilt",
    )
    assert reproduce.compare(history, "b" * 64, rebuilt) == (
        False,
        f"weights digest {'b' * 12} recorded, {'a' * 12} rebuilt",
    )
    shorter = {**rebuilt, "history": rows[:1]}
    assert reproduce.compare(history, "a" * 64, shorter) == (False, "2 epochs recorded, 1 rebuilt")


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("last-tuesday", "'last-tuesday' names no run: give a run id, models:/<name>@<alias> or"),
        ("0" * 32, f"{'0' * 32} is not in the MLflow store"),
        ("models:/mnist-dense@nope", "models:/mnist-dense@nope is not in the MLflow store"),
        ("models:/mnist-dense/7", "models:/mnist-dense/7 is not in the MLflow store"),
    ],
)
def test_a_reference_to_nothing_says_which_forms_and_store(ref, error):
    with pytest.raises(store.TrackingError, match="^" + error.replace("(", r"\(")):
        reproduce.reproduce(ref)


def test_a_run_that_failed_has_nothing_to_compare_with(repo):
    run_id = recorded_run({"error": "Diverged: loss nan"}, _config(), status="FAILED")
    with pytest.raises(store.TrackingError) as caught:
        reproduce.reproduce(run_id)
    assert str(caught.value) == (
        f"run {run_id} is FAILED (Diverged: loss nan): a run that did not finish has no result "
        "to compare a rebuild with; reproduce a FINISHED run"
    )


def test_a_run_from_before_provenance_names_what_it_lacks(repo):
    run_id = recorded_run({names.COMMIT: repo, names.DIRTY: "False"})
    with pytest.raises(store.TrackingError) as caught:
        reproduce.reproduce(run_id)
    assert str(caught.value) == (
        f"run {run_id} was made before runs recorded their provenance: it has no weights "
        "digest, data fingerprint, environment (env.* tags), config (config.yaml); train it "
        "again with this code and reproduce the new run"
    )


def test_a_commit_this_clone_lacks_says_to_fetch_it(repo):
    run_id = recorded_run(_provenance("e" * 40), _config())
    with pytest.raises(reproduce.ReproduceError) as caught:
        reproduce.reproduce(run_id)
    assert str(caught.value) == (
        f"run {run_id} was trained at commit {'e' * 12}, which this clone lacks: fetch it "
        f"(`git fetch origin {'e' * 40}`) and run this again"
    )


def test_data_no_source_can_supply_names_every_source_tried(repo, tmp_path):
    run_id = recorded_run(_provenance(repo), _config())
    with pytest.raises(reproduce.ReproduceError) as caught:
        reproduce.reproduce(run_id)
    assert str(caught.value).startswith(
        f"no source has the data of run {run_id} (fingerprint {'f' * 12}): tried the DVC cache "
        "(the commit has no dvc.lock entry: not there); the workspace (data/raw/mnist.npz: not "
        "there); cannot read "
        "MNIST_SOURCE=file:///nowhere/mnist.npz"
    )
    assert str(caught.value).endswith("point MNIST_SOURCE at a copy of it")
    assert list(tmp_path.glob("mlartifacts/*/*")) != []  # the run it refused to reproduce
    assert len(store.connect().search_runs(["1"])) == 1  # and no reproduction opened


def test_the_data_comes_from_mnist_source_by_its_fingerprint(repo, mnist, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_SOURCE", str(mnist.path))
    plain = _config(sha256=mnist.sha256, fingerprint=mnist.fingerprint)
    run = readback.read(readback.find(recorded_run(_provenance(repo, mnist.fingerprint), plain)))
    (tmp_path / "scratch").mkdir()
    found = reproduce.find_data(run, tmp_path / "scratch")
    assert found == tmp_path / "scratch" / "mnist.npz"
    assert found.read_bytes() == mnist.path.read_bytes()
