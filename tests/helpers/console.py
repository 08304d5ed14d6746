"""What a command printed, read as a person reads it."""

from __future__ import annotations

import re

# Lines that look like a failure, or are a progress bar (Keras' `422/422 ... 6ms/step`).
ALARMING = re.compile(r"Failed|Traceback|WARNING|Error:|/step\b")


def alarming(output: str) -> list[str]:
    """The lines of `output` that would alarm a person where nothing failed."""
    return [line for line in output.splitlines() if ALARMING.search(line)]
