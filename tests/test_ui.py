"""The MLflow UI as `make ui` starts it, on a store holding a real pipeline run, in headless
Chromium (Debian's package; `make test-all` installs it). Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from pipeline import ui
from pipeline.entry import stop_group

from .helpers import ROOT
from .helpers.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.server]  # a real run, shown by a real MLflow server
CHROMIUM = shutil.which("chromium")
SCREENSHOTS = ROOT / "test-artifacts"
START_S = 90
TIMEOUT_MS = 60_000
PNG = b"\x89PNG\r\n\x1a\n"


def _get(url: str, **headers: str) -> int:
    """The HTTP status of a GET, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5):
            return 200
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    """`python -m pipeline.ui` in the project, on a free loopback port; stopped, with every
    process it started, at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.ui", "--port", str(port)],
            cwd=project.path,
            env=project.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{ui.HOST}:{port}"
    try:
        deadline = time.monotonic() + START_S
        while _get(f"{url}/health") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the UI did not come up within {START_S} s (exit status "
                    f"{process.poll()}):\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        stop_group(process, grace=20)


def test_the_ui_listens_on_loopback_with_mlflows_security_defaults(server):
    command = ui.command(5000)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert not {
        "--allowed-hosts",
        "--cors-allowed-origins",
        "--disable-security-middleware",
    } & set(command)
    search = f"{server}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(search) == 200
    assert _get(search, Host="mlflow.example.com") == 403, "a foreign Host header got in"


@pytest.fixture
def browser_page():
    """A page of headless Chromium (Debian's), waiting up to a minute for what it is asked."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _assert_visible(page, *texts: str) -> None:
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_text(text, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)


def _assert_screenshot(page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / name)
    assert (SCREENSHOTS / name).read_bytes()[:8] == PNG, f"{name} is not a PNG"


def _assert_curves_drawn(page) -> None:
    """The run's metric charts, filtered to its curves and gaps: each chart is there, and a
    plotted line in each of the five curve charts (drawn, not still loading)."""
    close = page.get_by_role("button", name="Close", exact=True)  # an assistant panel, if open
    if close.count():
        close.last.click()
    page.get_by_placeholder("Search metric charts").fill("^(val_)?(accuracy|loss)$|gap$")
    _assert_visible(
        page, "accuracy", "val_accuracy", "loss", "val_loss", "train_val_gap", "overfitting_gap"
    )
    traces = ".js-plotly-plot .scatterlayer .trace"
    page.wait_for_function(f"document.querySelectorAll('{traces}').length >= 5")
    assert page.locator(traces).count() >= 5
    _assert_screenshot(page, "mlflow-run-curves.png")


def _assert_picture_previewed(page) -> None:
    """The learning curves picture, opened in the artifacts' tree, is shown decoded."""
    from playwright.sync_api import expect

    page.get_by_text("plots", exact=True).first.click()
    page.get_by_text("learning_curves.png", exact=True).first.click()
    preview = page.locator("img[src^='blob:']").first
    expect(preview).to_be_visible(timeout=TIMEOUT_MS)
    assert preview.evaluate("img => img.complete && img.naturalWidth") > 0, "a broken image"
    _assert_screenshot(page, "mlflow-run-pictures.png")


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed and could not "
    "be (`make test-all` runs `apt-get install chromium`, which needs root or "
    "sudo)",
)
def test_the_ui_shows_the_run_its_curves_metrics_and_pictures(server, project, browser_page):
    _, runs = project.runs()
    run = max(
        (
            r
            for r in runs
            if "sweep" not in r.data.tags and "mlflow.parentRunId" not in r.data.tags
        ),
        key=lambda r: int(r.data.params["train.epochs"]),
    )
    page_of = f"{server}/#/experiments/{run.info.experiment_id}/runs"
    page = browser_page

    # The experiment opens on its training runs (the run table), not MLflow's GenAI view,
    # from the link `make ui` prints.
    page.goto(ui.experiment_url(server, run.info.experiment_id))
    _assert_visible(page, run.info.run_name)
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url, page.url
    _assert_screenshot(page, "mlflow-experiment.png")
    page.goto(f"{page_of}/{run.info.run_id}")
    _assert_visible(page, "test_accuracy", "overfitting_gap", "train.epochs")
    page.goto(f"{page_of}/{run.info.run_id}/model-metrics")
    # The curves come first: nothing (per-digit charts once) pushes them out of view.
    _assert_visible(page, "accuracy")
    _assert_curves_drawn(page)
    page.goto(f"{page_of}/{run.info.run_id}/artifacts")
    _assert_visible(page, "plots", "history.csv", "metrics.json")
    _assert_picture_previewed(page)
