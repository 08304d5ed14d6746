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
    "folder, most",
    [("pipeline", 300), ("bench", 300), ("tests", 300), ("pipeline/tracking", 180)],
)
def test_files_stay_small(folder, most):
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / folder).rglob("*.py")
    }
    assert {path: size for path, size in sizes.items() if size > most} == {}, "split these"


def test_test_modules_import_helpers_never_each_other():
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert (node.module or "").split(".")[0] == "helpers", (
                    f"{path.name}: {node.module}"
                )
