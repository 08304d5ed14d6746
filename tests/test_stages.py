"""dvc.yaml: each stage lists every project module its entry point imports, directly or
through other project modules, and nothing else; so an edit reruns exactly what it affects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _path(module: str) -> Path:
    """The file of a project module or package."""
    plain = ROOT / f"{module.replace('.', '/')}.py"
    return plain if plain.is_file() else ROOT / module.replace(".", "/") / "__init__.py"


def _imports(module: str) -> set[str]:
    """The project modules `module` imports anywhere in its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            found.add(str(node.module))
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if _path(f"{node.module}.{alias.name}").is_file()
            }
    return found


def closure(module: str) -> set[str]:
    """Every project file that running `module` executes: its imports, theirs, and the
    packages' `__init__.py` on the way."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            parts = name.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))] + sorted(_imports(name))
    return {str(_path(name).relative_to(ROOT)) for name in seen}


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
    assert {"pipeline/train.py", "pipeline/evaluate.py", "pipeline/plots.py"} <= found
    assert {"pipeline/tracking/__init__.py", "pipeline/tracking/runs.py"} <= found


def test_editing_the_pictures_or_the_tracking_code_stales_the_right_stages():
    using = {stage: {dep for dep in STAGES[stage].get("deps", [])} for stage in STAGES}
    assert [s for s in STAGES if "pipeline/plots.py" in using[s]] == ["evaluate"]
    tracking = [s for s in STAGES if "pipeline/tracking/runs.py" in using[s]]
    assert tracking == ["train", "evaluate"]
