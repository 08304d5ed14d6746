"""dvc.yaml: each stage lists every project module its entry point imports, directly or
through other project modules, and nothing else; so an edit reruns exactly what it affects."""

from __future__ import annotations

import pytest
import yaml

from pipeline.common import sources

from .helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def closure(module: str) -> set[str]:
    return set(sources.closure(module))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_depends_on_exactly_the_modules_it_runs(stage):
    command = STAGES[stage]["cmd"].split()
    assert command[:2] == ["python", "-m"], f"{stage}: {STAGES[stage]['cmd']}"
    listed = {dep for dep in STAGES[stage].get("deps", []) if dep.endswith(".py")}
    runs = closure(command[2])
    assert sorted(runs - listed) == [], f"{stage} imports these; add them to its deps"
    assert sorted(listed - runs) == [], f"{stage} lists these without importing them"


def test_the_closure_follows_lazy_imports_and_packages():
    """The sweep imports train and evaluate inside a function; tracking is a package."""
    found = closure("pipeline.sweep")
    assert {"pipeline/train.py", "pipeline/evaluate.py", "pipeline/analysis/plots.py"} <= found
    assert {"pipeline/tracking/__init__.py", "pipeline/tracking/runs.py"} <= found


def test_editing_the_pictures_or_the_tracking_code_stales_the_right_stages():
    using = {stage: {dep for dep in STAGES[stage].get("deps", [])} for stage in STAGES}
    assert [s for s in STAGES if "pipeline/analysis/plots.py" in using[s]] == ["evaluate"]
    tracking = [s for s in STAGES if "pipeline/tracking/runs.py" in using[s]]
    assert tracking == ["train", "evaluate"]


def test_editing_the_downloader_reruns_the_download_alone():
    """What MNIST is (its arrays' names, the fingerprint) lives in pipeline/common/mnist.py, which
    every stage reads; the downloader is the download stage's own."""
    using = {stage: set(STAGES[stage].get("deps", [])) for stage in STAGES}
    assert [s for s in STAGES if "pipeline/download.py" in using[s]] == ["download"]
    assert {"download", "preprocess", "train", "evaluate"} <= {
        s for s in STAGES if "pipeline/common/mnist.py" in using[s]
    }


def test_a_modules_command_line_is_in_its_own_closure_only():
    """`if __name__ == "__main__":` runs where the module is the command: the checkpoint
    cache's command line is the command's code, not the training engine's (nor its key's)."""
    assert "pipeline/common/entry.py" in closure("pipeline.training.checkpoints")
    assert "pipeline/common/entry.py" not in closure("pipeline.training.engine")
    assert "pipeline/config/__main__.py" in closure("pipeline.config")
    assert "pipeline/config/__main__.py" not in closure("pipeline.train")
