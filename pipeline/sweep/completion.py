"""Tab completion of `python -m pipeline.sweep`'s overrides in bash, by Hydra's own completer.

    eval "$(python -m pipeline.sweep -sc install=bash)"
    python -m pipeline.sweep -m train.ep<Tab>      # train.epochs=

Hydra's script (`-sc install=bash`) completes `python <file>.py ...` only: it looks for a
file named by the word after `python`, and its query strips `python <file>` from the line.
For `python -m pipeline.sweep` the word is `-m`, so it completes nothing. The sweep's
`-sc install=bash` prints the script below instead, which asks Hydra for this command only
(any other `python` command keeps bash's own completion), and `-sc query=bash` hands Hydra
the line as if it named a file.
"""

from __future__ import annotations

import os
import re
import sys

FLAGS = ("-sc", "--shell-completion")
COMMAND = re.compile(r"^\s*\S*python[\d.]*\s+-m\s+pipeline\.sweep\b")

# As Hydra's own script (hydra/_internal/core_plugins/bash_completion.py), for this command.
SCRIPT = r"""_pipeline_sweep_completion()
{
    local words=($COMP_LINE)
    if [ "${words[1]}" != "-m" ] || [ "${words[2]}" != "pipeline.sweep" ]; then
        return
    fi
    local choices
    choices=$(COMP_LINE="$COMP_LINE" "${words[0]}" -m pipeline.sweep -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${words[$COMP_CWORD]}"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _pipeline_sweep_completion python python3
"""


def handle(argv: list[str]) -> None:
    """Before Hydra reads `argv` (the sweep's command line): print the bash script and exit
    for `-sc install=bash`; for `-sc query=bash`, rewrite the line Hydra completes (COMP_LINE)
    so that Hydra's query reads it. Anything else is left to Hydra."""
    asked = [value for flag, value in zip(argv, argv[1:], strict=False) if flag in FLAGS]
    if asked == ["install=bash"]:
        sys.stdout.write(SCRIPT)
        raise SystemExit(0)
    if asked == ["query=bash"] and "COMP_LINE" in os.environ:
        os.environ["COMP_LINE"] = COMMAND.sub("python sweep.py", os.environ["COMP_LINE"])
