"""Headless Chromium (Debian's package; `make test-all` installs it) for the tests that look
at a page as a user would: the MLflow UI, DVC's plots page. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import ROOT

CHROMIUM = shutil.which("chromium")
MISSING = (
    "Debian's chromium is not installed and could not be (`make test-all` runs "
    "`apt-get install chromium`, which needs root or sudo)"
)
SCREENSHOTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000


@contextmanager
def page() -> Iterator[Any]:
    """A page of a fresh browser profile, 1400x1100, waiting up to a minute for what it is
    asked."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            opened = browser.new_page(viewport={"width": 1400, "height": 1100})
            opened.set_default_timeout(TIMEOUT_MS)
            yield opened
        finally:
            browser.close()
