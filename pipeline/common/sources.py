"""The project's own code that running a module executes: its imports, theirs, and the
packages' `__init__.py` on the way, found in the source (lazy imports included). DVC's
`dvc.yaml` lists it per stage (tests/test_stages.py checks that), and the checkpoint cache
keys a training by it."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `pipeline` package


def path(module: str) -> Path:
    """The file of a project module or package."""
    plain = ROOT / f"{module.replace('.', '/')}.py"
    return plain if plain.is_file() else ROOT / module.replace(".", "/") / "__init__.py"


def _main(module: str) -> Path:
    """A package's command (`python -m package` runs its `__main__.py`)."""
    return ROOT / module.replace(".", "/") / "__main__.py"


def _is_main_block(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`, which runs only where the module is the command."""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def imports(module: str, as_main: bool = False) -> set[str]:
    """The project modules `module` imports anywhere in its code; its `__main__` block's too
    when it runs `as_main` (`python -m module`), not when another module imports it."""
    tree = ast.parse(path(module).read_text())
    if not as_main:
        tree.body = [node for node in tree.body if not _is_main_block(node)]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            found.add(str(node.module))
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if path(f"{node.module}.{alias.name}").is_file()
            }
    return found


def closure(*modules: str) -> list[str]:
    """Every project file that running each of `modules` (`python -m module`) executes,
    relative to `ROOT`, sorted: one walk, each file read once."""
    commands = [*modules, *(f"{m}.__main__" for m in modules if _main(m).is_file())]
    seen: set[str] = set()
    todo = list(commands)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            parts = name.split(".")
            found = imports(name, as_main=name in commands)
            todo += [".".join(parts[:i]) for i in range(1, len(parts))] + sorted(found)
    return sorted(str(path(name).relative_to(ROOT)) for name in seen)


def digest(*modules: str) -> str:
    """sha256 over the names and bytes of `closure(*modules)`: changes with any of that code."""
    hashed = hashlib.sha256()
    for name in closure(*modules):
        hashed.update(f"{name}\0".encode())
        hashed.update((ROOT / name).read_bytes())
        hashed.update(b"\0")
    return hashed.hexdigest()
