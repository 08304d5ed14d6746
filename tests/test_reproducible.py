"""Bit for bit, on real MNIST: a fresh copy rebuilds the committed results, and
`python -m pipeline.reproduce` rebuilds a DVC experiment, a sweep job, a run made from
uncommitted code, and names what differs in the environment; it touches nothing else. Where
other XLA flags change the bits, it tests the test predictions instead."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from pipeline.common import provenance

from .helpers.processes import wait_for
from .helpers.project import Project

pytestmark = pytest.mark.e2e
REPRODUCE = (sys.executable, "-m", "pipeline.reproduce")
VERDICTS = {0: "identical", 3: "equivalent", 4: "diverged"}  # by exit status


def test_a_fresh_copy_rebuilds_the_committed_results_bit_for_bit(tmp_path):
    copy = Project.copy(tmp_path / "project")
    copy.sh("dvc", "repro")
    metrics = json.loads((copy.path / "reports/metrics.json").read_text())
    # The notebook's 5 epochs overfit, measured either way: its gap, and the final model's.
    assert metrics["overfitting_gap"] > 0 and metrics["overfitting_gap_evaluated"] > 0
    changed = copy.sh("git", "status", "--porcelain")
    if changed:
        committed = json.loads(copy.sh("git", "show", "HEAD:reports/environment.json"))
        here = json.loads((copy.path / "reports/environment.json").read_text())
        differs = provenance.differences(committed, here)
        assert differs, f"same environment, other results:\n{copy.sh('git', 'diff')[-3000:]}"
        # Another CPU makes other bits (its differences are named above); what follows holds
        # for this machine's own, as for the committed ones on theirs.
        copy.sh("git", "commit", "-qam", f"this machine's results ({'; '.join(differs)})")

    # A change to train alone that leaves what it makes the same: evaluate does not rerun.
    with (copy.path / "pipeline/train.py").open("a") as source:
        source.write("# a comment changes the code, not the model\n")
    rerun = copy.sh("dvc", "repro")
    assert "Running stage 'train'" in rerun and "Running stage 'evaluate'" not in rerun
    assert copy.sh("git", "status", "--porcelain") == " M dvc.lock\n M pipeline/train.py\n"
    locked = (copy.path / "dvc.lock").read_text()
    copy.sh("dvc", "repro", "-f")
    assert (copy.path / "dvc.lock").read_text() == locked


def _latest(lab: Project):
    client, runs = lab.runs()
    return client, [r for r in runs if "reproduces" not in r.data.tags][-1]


def _reproduce(lab: Project, ref: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*REPRODUCE, ref], cwd=lab.path, env=lab.env | env, capture_output=True, text=True
    )


def test_a_dvc_experiment_is_reproduced_identical_and_nothing_else_changes(lab):
    client, run = _latest(lab)
    before = {name: (lab.path / name).read_bytes() for name in ("params.yaml", "dvc.lock")}
    status = lab.sh("git", "status", "--porcelain")

    done = _reproduce(lab, "models:/mnist/1")

    assert done.returncode == 0, done.stderr[-3000:]
    verdict = f"identical: run {run.info.run_id} rebuilt from commit "
    assert done.stdout.startswith(verdict), done.stdout
    assert "weights digest" in done.stdout and "1 epoch of accuracy, loss" in done.stdout
    assert done.stdout.endswith("environment: the same\n")
    original = client.get_run(run.info.run_id)
    assert original.data.tags["reproduced"] == "identical"
    reproduction = client.get_run(original.data.tags["reproduced_by"])
    assert reproduction.data.tags["reproduces"] == run.info.run_id
    assert reproduction.info.status == "FINISHED"
    assert reproduction.data.tags["weights_digest"] == original.data.tags["weights_digest"]
    # The rebuild predicts the test digits as evaluate did: the same labels, to the digit.
    assert reproduction.data.metrics["test_accuracy"] == original.data.metrics["test_accuracy"]
    assert reproduction.data.metrics["mcnemar_p_value"] == 1.0
    assert {name: (lab.path / name).read_bytes() for name in before} == before
    assert lab.sh("git", "status", "--porcelain") == status
    assert len(lab.sh("git", "worktree", "list").splitlines()) == 1
    assert len(client.search_model_versions("name = 'mnist'")) == 1


def test_a_sweep_job_is_reproduced_identical(lab):
    lab.sh(sys.executable, "-m", "pipeline.sweep", "train.epochs=1", "train.batch_size=256")
    _, job = _latest(lab)
    assert "hydra_output_dir" in job.data.tags

    done = _reproduce(lab, job.info.run_id)

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"identical: run {job.info.run_id}"), done.stdout


def test_other_threads_and_onednn_off_are_named_whether_or_not_the_weights_differ(lab):
    changed = {"TF_NUM_INTRAOP_THREADS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}
    subprocess.run(
        [sys.executable, "-m", "pipeline.train"], cwd=lab.path, env=lab.env | changed, check=True
    )
    _, run = _latest(lab)

    done = _reproduce(lab, run.info.run_id)

    assert done.returncode in VERDICTS, done.stderr[-3000:]
    verdict = VERDICTS[done.returncode]
    assert done.stdout.startswith(f"{verdict}: run {run.info.run_id}"), done.stdout
    assert done.stdout.endswith(
        "environment differs: onednn: off -> on; tf_num_intraop_threads: 1 -> default\n"
    )


def test_other_xla_flags_change_the_bits_and_mcnemar_judges_the_predictions(lab):
    # Measured on the 2-core AMD EPYC (AVX-512): XLA compiled for SSE4.2 alone rounds
    # otherwise, epoch 1 ends with other weights (AVX2 alone changed nothing there). A CPU
    # whose best is SSE4.2 computes the same bits: then there is nothing to judge.
    client, run = _latest(lab)
    flags = "--xla_cpu_max_isa=SSE4_2"

    done = _reproduce(lab, "models:/mnist/1", XLA_FLAGS=flags)

    assert done.returncode in VERDICTS, done.stderr[-3000:]
    verdict = VERDICTS[done.returncode]
    if verdict == "identical":
        pytest.skip(f"XLA_FLAGS={flags} computes the same bits on this CPU: {done.stdout}")
    line = re.fullmatch(
        rf"{verdict}: run {run.info.run_id} rebuilt from commit \w{{12}} in [\d.]+ s: the bits "
        r"differ \((?P<first>[^)]+)\); test accuracy (?P<rebuilt>[\d.]+)% against "
        r"(?P<original>[\d.]+)% \(95% interval (?P<low>[\d.]+) to (?P<high>[\d.]+)\), exact "
        r"McNemar on 10,000 test digits \((?P<gained>[\d,]+) right in the rebuild alone, "
        r"(?P<lost>[\d,]+) in the original alone\) p (= (?P<p>[\d.]+)|< 0\.001)(?P<why>: .+)?\n"
        rf"environment differs: xla_flags: default -> {flags}\n",
        done.stdout,
    )
    assert line, done.stdout
    assert (line["why"] is None) == (verdict == "equivalent"), done.stdout
    original = client.get_run(run.info.run_id)
    assert original.data.tags["reproduced"] == verdict
    reproduction = client.get_run(original.data.tags["reproduced_by"]).data
    assert reproduction.tags["reproduced"] == verdict
    assert reproduction.tags["weights_digest"] != original.data.tags["weights_digest"]
    assert f"{100 * reproduction.metrics['test_accuracy']:.2f}" == line["rebuilt"]
    assert f"{100 * original.data.metrics['test_accuracy']:.2f}" == line["original"]
    if line["p"]:
        assert reproduction.metrics["mcnemar_p_value"] == pytest.approx(
            float(line["p"]), abs=0.005
        )


def test_a_run_of_uncommitted_code_is_rebuilt_from_its_recorded_diff(lab):
    module = lab.path / "pipeline" / "training" / "families" / "dense.py"
    committed = module.read_text()
    softmax = 'keras.layers.Dense(NUM_CLASSES, activation="softmax")'
    assert softmax in committed
    module.write_text(committed.replace(softmax, softmax[:-1] + ", use_bias=False)"))
    try:
        lab.sh(sys.executable, "-m", "pipeline.train")
    finally:
        module.write_text(committed)
    client, run = _latest(lab)
    assert run.data.tags["git_dirty"] == "True"

    done = _reproduce(lab, run.info.run_id)

    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "with its recorded diff" in done.stdout and done.stdout.startswith("identical")
    assert module.read_text() == committed


def test_sigterm_removes_the_worktree_and_kills_the_reproduction(lab, tmp_path):
    client, run = _latest(lab)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    log = tmp_path / "reproduce.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*REPRODUCE, run.info.run_id],
            cwd=lab.path,
            env=lab.env | {"TMPDIR": str(scratch)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        worktrees = lambda: len(lab.sh("git", "worktree", "list").splitlines())  # noqa: E731
        wait_for(lambda: worktrees() == 2, "the worktree", timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143, log.read_text()[-3000:]
    finally:
        process.kill()
    assert "stopped by SIGTERM" in log.read_text()
    assert worktrees() == 1 and list(scratch.iterdir()) == []
    reproductions = [r for r in lab.runs()[1] if r.data.tags.get("reproduces") == run.info.run_id]
    assert reproductions[-1].info.status == "KILLED"
