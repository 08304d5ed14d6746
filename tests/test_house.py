"""The house rules a contributor relies on to find their way: small files, short functions,
one room per tracking concern, and tests that import helpers, never one another."""

from __future__ import annotations

import ast

import pytest

from .helpers import ROOT

CODE = sorted(
    p for folder in ("pipeline", "bench", "tests") for p in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_40_lines(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 40
    ]
    assert long == [], "split these in two"


@pytest.mark.parametrize(
    "folder, most", [("pipeline", 300), ("bench", 300), ("tests", 300), ("pipeline/tracking", 180)]
)
def test_files_stay_small(folder, most):
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / folder).rglob("*.py")
    }
    assert {path: size for path, size in sizes.items() if size > most} == {}, "split these"


LOGGING_CALLS = {"log_metric", "log_param", "set_tag", "set_experiment_tag", "get_metric_history"}


def test_a_new_mlflow_name_is_written_in_names_py_first():
    """Not only the names already there: a literal logged as a metric, param or tag (a call's
    name, or a key of a `metrics`, `params` or `tags` dict) anywhere but names.py."""
    literal = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.name == "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            keys: list[ast.expr] = []
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                keys = [node.slice] if node.value.id in {"metrics", "params", "tags"} else []
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keys = node.args[:2] if node.func.attr in LOGGING_CALLS else []
            literal += [
                f"{path.relative_to(ROOT)}:{node.lineno} {key.value!r}"
                for key in keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            ]
    assert literal == [], "name these in pipeline/tracking/names.py"


def test_test_modules_import_helpers_never_each_other():
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert (node.module or "").split(".")[0] == "helpers", (
                    f"{path.name}: {node.module}"
                )


def test_mlflow_names_are_written_once():
    """Tag and metric names live in pipeline/tracking/names.py; other modules import them. A
    per-epoch metric keeps its history column's name (`val_accuracy`), Keras' and the engine's."""
    from pipeline.tracking import names

    written = {
        value: name
        for name, value in vars(names).items()
        if name.isupper() and isinstance(value, str) and value != names.VAL_ACCURACY
    }
    # Not MLflow's: a field of the checkpoint cache's key, and of rebuild's JSON for reproduce.
    elsewhere = {
        ("pipeline/training/checkpoints.py", names.FINGERPRINT),
        ("pipeline/rebuild.py", names.WEIGHTS),
        ("pipeline/reproduce/__main__.py", names.WEIGHTS),  # rebuild's JSON, at any commit
    }
    again = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r} (names.{written[node.value]})"
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        if path.name != "names.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and node.value in written
        and (str(path.relative_to(ROOT)), node.value) not in elsewhere
    ]
    assert again == [], "import these from pipeline.tracking.names"


def test_the_top_of_pipeline_is_what_a_dvc_user_runs_and_each_folder_says_what_it_holds():
    """The four stages, predict and rebuild (the contract older commits are rebuilt by) on
    top; every other module in a folder named after its subsystem, whose docstring says what
    it holds."""
    top = sorted(p.stem for p in (ROOT / "pipeline").glob("*.py"))
    assert top == ["__init__", "download", "evaluate", "predict", "preprocess", "rebuild", "train"]
    for init in (ROOT / "pipeline").glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.parent.name}/ says nothing"


def test_common_imports_nothing_above_it():
    """What every command shares imports no config, stage or subsystem: the house runs one
    way, and a fix in common/ cannot pull a stage's code into another's."""
    above = []
    for path in sorted((ROOT / "pipeline" / "common").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                names = {alias.name for alias in node.names}
                if node.module == "pipeline" and names <= {"PipelineError", "Stopped"}:
                    continue
                if not str(node.module).startswith("pipeline.common"):
                    above.append(f"{path.name}: from {node.module} import {', '.join(names)}")
    assert above == []
