"""What the tests share: synthetic data, project sandboxes, processes and servers they start.

Test modules import from here, never from one another or from conftest (which holds only
fixtures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent  # the project's folder
