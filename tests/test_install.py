"""pyproject.toml's packaging: a wheel, installed as users install it (not editable), holds
every module of the source tree, and the commands run from it in a project folder that holds
only conf/ and params.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT


def _modules(top: Path) -> list[str]:
    """The dotted names of every module below `top`'s `pipeline/`."""
    return sorted(
        ".".join(p.relative_to(top).with_suffix("").parts).removesuffix(".__init__")
        for p in (top / "pipeline").rglob("*.py")
    )


def _run(*command: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{(done.stdout + done.stderr)[-3000:]}"
    return done.stdout + done.stderr


def _installed(tmp_path: Path) -> Path:
    """The wheel of the source tree, built and installed as users do: where it went."""
    source = tmp_path / "source"  # built outside the checkout: no build/ or egg-info left in it
    for package in ("pipeline", "hydra_plugins"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet")
    _run(*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(source), cwd=tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    site = tmp_path / "site"
    _run(*pip, "install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path)
    return site


@pytest.mark.e2e  # builds a wheel (pip fetches setuptools from the package index once)
def test_a_wheel_install_holds_every_module_and_runs_the_commands(tmp_path):
    site = _installed(tmp_path)
    assert _modules(site) == _modules(ROOT), "the wheel lacks modules of the source tree"

    project = tmp_path / "project"  # a user's folder: the config, not the source
    shutil.copytree(ROOT / "conf", project / "conf")
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    env = os.environ | {"PYTHONPATH": str(site)}
    imports = "import importlib, pipeline; print(pipeline.__file__)\n"
    imports += f"for name in {_modules(site)!r}: importlib.import_module(name)"
    assert _run(sys.executable, "-c", imports, cwd=project, env=env).startswith(str(site))
    assert "params.yaml is valid" in _run(
        sys.executable, "-m", "pipeline.config", "--check", cwd=project, env=env
    )
    composed = _run(
        sys.executable,
        "-m",
        "pipeline.sweep",
        "--cfg",
        "job",
        "train.epochs=3",
        cwd=project,
        env=env,
    )
    assert "epochs: 3" in composed
    plugins = _run(
        sys.executable, "-m", "pipeline.search", "--info", "plugins", cwd=project, env=env
    )
    assert "\t\tSearchSweeper\n" in plugins, plugins  # Hydra found the search's sweeper
    where = "import hydra_plugins.pipeline_search.search_sweeper as m; print(m.__file__)"
    assert _run(sys.executable, "-c", where, cwd=project, env=env).startswith(str(site))
    assert "usage: python -m pipeline.server" in _run(
        sys.executable, "-m", "pipeline.server", "--help", cwd=project, env=env
    )
