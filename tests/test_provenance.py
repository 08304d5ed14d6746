"""What a result is a function of: the weights' digest, the environment, the source's state."""

from __future__ import annotations

import subprocess
import time

import numpy as np

from pipeline.common import provenance


def test_the_weights_digest_covers_values_dtype_and_shape_in_order():
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float32)
    digest = provenance.weights_digest([a, b])
    assert digest == provenance.weights_digest([a.copy(), b.copy()])
    assert len(digest) == 64
    changed = a.copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(100))  # one bit of one weight
    assert provenance.weights_digest([changed, b]) != digest
    assert provenance.weights_digest([a.reshape(3, 2), b]) != digest
    assert provenance.weights_digest([a.astype(np.float64), b]) != digest
    assert provenance.weights_digest([b, a]) != digest


def test_the_environment_names_versions_cpu_threads_and_onednn(monkeypatch):
    for name in (*provenance.VARIABLES, "TF_ENABLE_ONEDNN_OPTS"):
        monkeypatch.delenv(name, raising=False)
    default = provenance.environment()
    assert {"python", "numpy", "tensorflow", "keras", "keras_backend", "cpu", "cpus"} <= set(
        default
    )
    assert default["keras_backend"] == "jax" and default["jax"]  # the default, and its version
    assert default["tf_num_intraop_threads"] == "default"
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    changed = provenance.environment()
    assert provenance.differences(default, changed) == [
        f"onednn: {default['onednn']} -> off",
        "tf_num_intraop_threads: default -> 1",
    ]
    assert provenance.differences(default, default) == []


def _git(cwd, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_the_source_diff_replays_uncommitted_changes_and_new_files_on_the_commit(tmp_path):
    repo, replay = tmp_path / "repo", tmp_path / "replay"
    (repo / "pipeline").mkdir(parents=True)
    (repo / "pipeline" / "model.py").write_text("UNITS = 512\n")
    (repo / "notes.txt").write_text("not source\n")
    _git(tmp_path, "init", "-q", "repo")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "c")
    assert provenance.commit(repo) == _git(repo, "rev-parse", "HEAD").strip()
    assert provenance.source_diff(repo) == ""
    (repo / "notes.txt").write_text("changed, but not source\n")
    assert provenance.source_diff(repo) == ""
    (repo / "pipeline" / "model.py").write_text("UNITS = 64\n")
    (repo / "pipeline" / "extra.py").write_text("NEW = True\n")
    patch = provenance.source_diff(repo)
    _git(repo, "worktree", "add", "-q", "--detach", str(replay), "HEAD")
    (tmp_path / "source.diff").write_text(patch)
    _git(replay, "apply", str(tmp_path / "source.diff"))
    assert (replay / "pipeline" / "model.py").read_text() == "UNITS = 64\n"
    assert (replay / "pipeline" / "extra.py").read_text() == "NEW = True\n"


def test_outside_a_git_repo_there_is_no_commit(tmp_path):
    assert provenance.commit(tmp_path) is None


def test_a_git_call_left_early_takes_what_git_started_with_it(tmp_path):
    """A timeout (as a Ctrl-C or SIGTERM) kills git's whole process group: what git runs in a
    child of its own (a worktree's checkout; here an alias's shell) writes nothing after."""
    slow = "alias.slow=!sleep 1.5; touch written-after-git-was-killed"
    assert provenance.git("-c", slow, "slow", cwd=tmp_path, timeout=0.3) is None
    time.sleep(2.5)
    assert list(tmp_path.iterdir()) == []
