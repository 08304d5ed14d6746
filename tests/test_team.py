"""Experiments shared between machines through a git remote and a DVC remote, on real MNIST:
two clones each run an experiment and push it, a third pulls both."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from .helpers.project import copy_project, sh

pytestmark = pytest.mark.e2e


def test_experiments_from_two_clones_reach_a_third_through_the_remotes(tmp_path):
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-remote"
    env = copy_project(tmp_path / "project")
    sh(tmp_path / "project", env, "make", "remote", f"URL={store}")
    sh(tmp_path / "project", env, "git", "commit", "-qam", "the team's DVC remote")
    sh(tmp_path, env, "git", "clone", "-q", "--bare", "project", str(origin))

    def clone(name: str) -> Path:
        sh(tmp_path, env, "git", "clone", "-q", str(origin), name)
        return tmp_path / name

    alice, bob = clone("alice"), clone("bob")
    sh(alice, env, "dvc", "exp", "run", "-n", "alice-1-epoch", "-S", "train.epochs=1")
    sh(alice, env, "dvc", "exp", "push", "origin", "alice-1-epoch")
    sh(bob, env, "dvc", "config", "--local", "exp.auto_push", "true")
    sh(bob, env, "dvc", "config", "--local", "exp.git_remote", "origin")
    sh(bob, env, "dvc", "exp", "run", "-n", "bob-2-epochs", "-S", "train.epochs=2")

    carol = clone("carol")
    sh(carol, env, "dvc", "exp", "pull", "origin", "alice-1-epoch", "bob-2-epochs")
    shown = csv.DictReader(io.StringIO(sh(carol, env, "dvc", "exp", "show", "--csv")))
    rows = {row["Experiment"]: row for row in shown if row["Experiment"]}
    assert rows.keys() == {"alice-1-epoch", "bob-2-epochs"}
    assert rows["alice-1-epoch"]["train.epochs"] == "1"
    assert rows["bob-2-epochs"]["train.epochs"] == "2"
    assert all(0.9 < float(row["test_accuracy"]) < 1 for row in rows.values())

    sh(carol, env, "dvc", "exp", "apply", "bob-2-epochs")  # its model, from the DVC remote
    assert (carol / "models" / "model.keras").stat().st_size > 1_000_000
    assert "up to date" in sh(carol, env, "dvc", "status")
