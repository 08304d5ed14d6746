"""Tab completion of the sweep's overrides in bash, as docs/sweeps.md installs it: Hydra's
completer, for `python -m pipeline.sweep` (Hydra's own script completes only `python
<file>.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import replicates

from .helpers import ROOT

# What bash does on <Tab>: the line so far and the index of the word being completed.
COMPLETE = """eval "$({python} -m pipeline.sweep -sc install=bash)"
COMP_LINE="$1"; COMP_CWORD=$2
_pipeline_sweep_completion
printf '%s\\n' "${{COMPREPLY[@]}}"
"""


def _tab(line: str) -> list[str]:
    """The completions bash offers for `line` with the cursor at its end."""
    script = COMPLETE.format(python=sys.executable)
    cword = len(line.split()) - (0 if line.endswith(" ") else 1)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [shutil.which("bash") or "bash", "-c", script, "bash", line, str(cword)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_tab_completes_the_documented_sweep_command_and_nothing_else():
    assert _tab("python -m pipeline.sweep -m train.ep") == ["train.epochs="]
    assert _tab("python -m pipeline.sweep -m grid=") == ["grid=overfitting"]
    assert _tab("python -m http.server 80") == []  # bash's own completion


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["-cn", "config"], ["-p", "train"]])
def test_the_values_of_hydras_flags_are_no_overrides(flag):
    """Read as an override, the flag's value would be a Hydra error, and the command line
    left as it is: the seeds are added only if it is not."""
    argv = ["-m", *flag, "train.epochs=2", "replicates=2"]
    assert replicates.expand(argv) == [*argv, "train.seed=42,43"]


def test_shell_completion_asks_for_no_replicates():
    assert replicates.expand(["-sc", "install=bash"]) == ["-sc", "install=bash"]
