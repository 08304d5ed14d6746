"""Replicates on real MNIST: a sweep of 2 configurations x 3 seeds, in a copy of the session's
trained project (conftest's `lab`), grouped as configurations and registering one version."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from .helpers.console import alarming
from .helpers.project import Project

pytestmark = pytest.mark.e2e


def _sweep(lab: Project) -> tuple[list, list]:
    """Run the replicated sweep; its parent run and its children, new in the store."""
    lock = (lab.path / "dvc.lock").read_text()
    _, before = lab.runs()
    output = lab.sh(
        sys.executable,
        "-m",
        "pipeline.sweep",
        "-m",
        "replicates=3",
        "train.epochs=1",
        "train.batch_size=256,512",
    )
    assert "Running stage" not in output, "the sweep prepared the data again"
    # Its console: our lines, an epoch each; no TPU looked for, no registry lines of MLflow's.
    assert alarming(output) == []
    assert output.count("epoch 1/1 in ") == 6 and "libtpu" not in output
    assert "Created version" not in output and "already exists" not in output
    assert (lab.path / "dvc.lock").read_text() == lock
    _, runs = lab.runs()
    old = {r.info.run_id for r in before}
    runs = [r for r in runs if r.info.run_id not in old]
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents}
    ]
    return parents, children


def test_a_replicated_sweep_is_grouped_as_configurations_and_registers_one_version(lab):
    client, _ = lab.runs()
    versions = len(client.search_model_versions("name = 'mnist'"))
    (parent,), children = _sweep(lab)
    seeds = sorted(
        (r.data.params["train.batch_size"], r.data.params["train.seed"]) for r in children
    )
    assert seeds == [(batch, seed) for batch in ("256", "512") for seed in ("42", "43", "44")]
    by_configuration: dict[str, set[str]] = {}
    for child in children:
        metrics = child.data.metrics
        assert child.info.status == "FINISHED" and 0.9 < metrics["test_accuracy"] < 0.99
        assert metrics["test_accuracy_ci_low"] < metrics["test_accuracy"]
        assert metrics["test_accuracy"] < metrics["test_accuracy_ci_high"]
        by_configuration.setdefault(child.data.tags["configuration"], set()).add(
            child.data.params["train.batch_size"]
        )
    assert sorted(map(sorted, by_configuration.values())) == [["256"], ["512"]]
    assert parent.data.metrics["configurations"] == 2
    assert parent.data.metrics["val_accuracy_ci_low"] < parent.data.metrics["val_accuracy_mean"]
    folder = Path(parent.data.tags["sweep_dir"])
    assert len(pd.read_csv(folder / "sweep_report.csv")) == 6
    assert len(pd.read_csv(folder / "sweep_configurations.csv")) == 2
    text = (folder / "sweep_report.md").read_text()
    assert text.startswith("6 jobs (2 configurations x 3 seeds): 6 run, 0 reused, 0 failed.")
    assert "Welch's t-test" in text
    after = client.search_model_versions("name = 'mnist'")
    assert len(after) == versions + 1, "a sweep registers one version, not one per job"
    (new,) = [v for v in after if v.run_id == parent.data.tags["best_run_id"]]
    assert new.tags["promotion.decision"] in ("promoted", "kept")
