"""Model families end to end, as a user picks one: a sweep over both families (synthetic
digits) reports them apart and registers its best as its family; on real MNIST, `dvc exp run
-S model=convnet` trains Chollet's convnet through every stage, and its run, its model file,
its registry version and `python -m pipeline.reproduce` all read as a convnet's."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.sweep import report as sweep_report
from pipeline.training import model

from .helpers.sweep import Sweep

pytestmark = pytest.mark.e2e


def test_a_sweep_over_model_families_reports_them_and_registers_the_best_as_its_family(tmp_path):
    done = Sweep(tmp_path, "-m", "model=dense,convnet", "train.epochs=1")
    assert done.returncode == 0, done.output[-3000:]
    children = done.children()
    assert sorted(r.data.params["model.family"] for r in children) == ["convnet", "dense"]
    rows = pd.read_csv(done.folder / sweep_report.CSV)
    assert sorted(rows["family"]) == ["convnet", "dense"], "the families are not told apart"
    best = done.parent.data.tags["best_run_id"]
    family = next(r.data.params["model.family"] for r in children if r.info.run_id == best)
    (version,) = done.client.search_model_versions("name = 'mnist'")
    assert (version.run_id, version.tags["model_family"]) == (best, family)


def test_a_convnet_runs_through_dvc_is_registered_as_one_and_reproduces_bit_for_bit(lab):
    output = lab.sh("dvc", "exp", "run", "-S", "model=convnet", "-S", "train.epochs=1")
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    client, runs = lab.runs()
    run = runs[-1]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["model.family"], params["model.filters"]) == ("convnet", "[32, 64]")
    assert "model.hidden_units" not in params, "the dense family's params on a convnet's run"
    net = model.load(lab.path / "models" / "model.keras")
    assert net.name == "mnist_convnet"
    layers = [type(layer).__name__ for layer in net.layers]
    assert layers == ["Reshape", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten"] + [
        "Dense"
    ]
    metrics = json.loads((lab.path / "reports" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.96, "one epoch of Chollet's convnet reaches about 98%"
    dense, convnet = (client.get_model_version("mnist", str(v)) for v in (1, 2))
    assert (dense.tags["model_family"], convnet.tags["model_family"]) == ("dense", "convnet")
    assert convnet.run_id == run.info.run_id

    done = subprocess.run(
        [sys.executable, "-m", "pipeline.reproduce", "models:/mnist/2"],
        cwd=lab.path,
        env=lab.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"identical: run {run.info.run_id} rebuilt from commit ")
