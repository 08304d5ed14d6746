"""`python -m pipeline.reproduce`: each verdict's exit status, line, tags and metrics, the
evidence it cannot find, where the data comes from, and each bad input as one clear line.
The verdicts' logic is in test_verdict.py; real rebuilds on real MNIST in
test_reproducible.py."""

from __future__ import annotations

import subprocess

import pytest
from mlflow import MlflowClient

from pipeline import config
from pipeline.reproduce import __main__ as reproduce
from pipeline.tracking import names, readback, store

from .helpers.tracking import get_run, recorded_run


def _config(url: str = "file:///nowhere/mnist.npz", **data: str) -> dict:
    plain = config.to_dict(config.from_conf())
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


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("last-tuesday", "'last-tuesday' names no run: give a run id, models:/<name>@<alias> or"),
        ("0" * 32, f"{'0' * 32} is not in the MLflow store"),
        ("models:/mnist@nope", "models:/mnist@nope is not in the MLflow store"),
        ("models:/mnist/7", "models:/mnist/7 is not in the MLflow store"),
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


PREDICTIONS = "index,actual,predicted,probability\n0,1,1,0.9\n1,2,2,0.8\n2,8,8,0.7\n"


@pytest.fixture
def finished(repo, mnist, monkeypatch) -> str:
    """A finished run of the repo's commit on the synthetic MNIST (test labels 1, 2, 8), one
    epoch of `loss` and the weights digest 0...0, that evaluate saw predict all three right."""
    monkeypatch.setenv("MNIST_SOURCE", str(mnist.path))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as entry.run sets it
    plain = _config(sha256=mnist.sha256, fingerprint=mnist.fingerprint)
    run_id = recorded_run(_provenance(repo, mnist.fingerprint), plain)
    client = MlflowClient(store.uri())
    client.log_metric(run_id, "loss", 0.5, step=1)
    client.log_text(run_id, PREDICTIONS, "predictions.csv")
    return run_id


def _rebuilding(monkeypatch, digest: str, **predicted: list[int]) -> None:
    """`reproduce.rebuild` answers as a rebuild.py would, at once: the digest, one epoch of
    loss 0.5, the same environment and (given `test_predicted`) the predicted labels."""
    rebuilt = {
        "weights_digest": digest,
        "environment": {"python": "3.11.7"},
        "history": [{"epoch": 1, "loss": 0.5}],
        **predicted,
    }
    monkeypatch.setattr(reproduce, "rebuild", lambda *args: rebuilt)


def _printed(capsys) -> str:
    """The verdict's two lines from what the command printed (MLflow's own log lines can
    follow it into the test's captured stdout)."""
    return "".join(capsys.readouterr().out.splitlines(keepends=True)[:2])


def _main(run_id: str) -> int:
    """`python -m pipeline.reproduce RUN`'s exit status."""
    try:
        reproduce.main([run_id])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


@pytest.mark.parametrize(
    ("digest", "predicted", "status", "detail", "p_value"),
    [
        ("0" * 64, [1, 2, 8], 0, "weights digest 000000000000 and 1 epoch of loss equal", 1.0),
        (
            "1" * 64,
            [1, 2, 3],
            3,
            "the bits differ (weights digest 000000000000 recorded, 111111111111 rebuilt); test "
            "accuracy 66.67% against 100.00% (95% interval 43.85 to 100.00), exact McNemar on "
            "3 test digits (0 right in the rebuild alone, 1 in the original alone) p = 1.00",
            1.0,
        ),
        (
            "1" * 64,
            [0, 0, 0],
            4,
            "the bits differ (weights digest 000000000000 recorded, 111111111111 rebuilt); test "
            "accuracy 0.00% against 100.00% (95% interval 43.85 to 100.00), exact McNemar on 3 "
            "test digits (0 right in the rebuild alone, 3 in the original alone) p = 0.25: the "
            "rebuild's accuracy is outside the original's interval",
            0.25,
        ),
    ],
    ids=["identical", "equivalent", "diverged"],
)
def test_each_verdict_has_its_exit_status_line_tags_and_metrics(
    finished, monkeypatch, capsys, digest, predicted, status, detail, p_value
):
    _rebuilding(monkeypatch, digest, test_predicted=predicted)

    assert _main(finished) == status

    out = _printed(capsys)
    name = {0: "identical", 3: "equivalent", 4: "diverged"}[status]
    assert out.startswith(f"{name}: run {finished} rebuilt from commit ")
    assert out.endswith(f": {detail}\nenvironment: the same\n")
    original = get_run(finished).data.tags
    assert original[names.VERDICT] == name
    reproduction = get_run(original[names.REPRODUCED_BY]).data
    assert reproduction.tags[names.VERDICT] == name
    accuracy = sum(a == b for a, b in zip(predicted, [1, 2, 8], strict=True)) / 3
    assert reproduction.metrics[names.MCNEMAR_P_VALUE] == p_value
    assert reproduction.metrics[names.TEST_ACCURACY] == accuracy


def test_a_rebuild_py_from_before_predictions_diverges_untested(finished, monkeypatch, capsys):
    _rebuilding(monkeypatch, "1" * 64)  # its JSON has no test_predicted: an older commit's

    assert _main(finished) == 4

    commit = get_run(finished).data.tags[names.COMMIT]
    assert _printed(capsys).endswith(
        f"rebuilt); equivalence untested: the rebuild at commit {commit[:12]} predicts no test "
        "digits (its pipeline/rebuild.py predates that)\nenvironment: the same\n"
    )
    reproduction = get_run(get_run(finished).data.tags[names.REPRODUCED_BY]).data
    assert reproduction.tags[names.VERDICT] == "diverged"
    assert names.MCNEMAR_P_VALUE not in reproduction.metrics
    assert names.TEST_ACCURACY not in reproduction.metrics


def test_a_run_without_predictions_diverges_untested(repo, mnist, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_SOURCE", str(mnist.path))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plain = _config(sha256=mnist.sha256, fingerprint=mnist.fingerprint)
    run_id = recorded_run(_provenance(repo, mnist.fingerprint), plain)  # no predictions.csv
    MlflowClient(store.uri()).log_metric(run_id, "loss", 0.5, step=1)
    _rebuilding(monkeypatch, "1" * 64, test_predicted=[1, 2, 3])

    assert _main(run_id) == 4

    assert _printed(capsys).endswith(
        f"rebuilt); equivalence untested: run {run_id} has no predictions.csv artifact to test "
        "the rebuild's predictions against (evaluate logs it; this run predates that or was "
        "never evaluated)\nenvironment: the same\n"
    )
    reproduction = get_run(get_run(run_id).data.tags[names.REPRODUCED_BY]).data
    assert names.MCNEMAR_P_VALUE not in reproduction.metrics
    assert reproduction.metrics[names.TEST_ACCURACY] == 2 / 3  # the rebuild's, all the same


def test_predictions_of_other_digits_are_not_compared(finished, monkeypatch, capsys):
    MlflowClient(store.uri()).log_text(
        finished, PREDICTIONS.replace(",8,8,", ",7,7,"), "predictions.csv"
    )
    _rebuilding(monkeypatch, "1" * 64, test_predicted=[1, 2, 8])

    assert _main(finished) == 4

    assert (
        f"equivalence untested: run {finished}'s predictions are not of this data's test "
        "digits\n" in _printed(capsys)
    )


def test_help_names_every_exit_status(capsys):
    with pytest.raises(SystemExit) as done:
        reproduce.main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "exit status: 0 identical (the same bits), 3 equivalent (other bits, results that do "
        "not differ significantly on the test digits), 4 diverged (otherwise, or untestable), "
        "1 an error, 2 a bad command line" in shown
    )
