"""Moved: the sweep report is `pipeline.sweep_report` (this name sat beside `reports/`, which
holds evaluate's outputs, not the sweep's)."""

import sys

if __name__ == "__main__":
    sys.exit(
        "error: `python -m pipeline.report` is now `python -m pipeline.sweep_report` "
        "(same arguments)"
    )
