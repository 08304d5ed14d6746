"""The MLflow UI as `make ui` starts it, on a store holding a real pipeline run, in headless
Chromium (Debian's package; `make test` installs it). Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from pipeline import ui
from pipeline.server import stop_group

from .conftest import ROOT, free_port

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium")
SCREENSHOTS = ROOT / "test-artifacts"
START_S = 90


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
        process = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--port", str(port)],
                                   cwd=project.path, env=project.env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{ui.HOST}:{port}"
    try:
        deadline = time.monotonic() + START_S
        while _get(f"{url}/health") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the UI did not come up within {START_S} s (exit status "
                            f"{process.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_group(process, grace=20)


def test_the_ui_listens_on_loopback_with_mlflows_security_defaults(server):
    command = ui.command(5000)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert not {"--allowed-hosts", "--cors-allowed-origins",
                "--disable-security-middleware"} & set(command)
    search = f"{server}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(search) == 200
    assert _get(search, Host="mlflow.example.com") == 403, "a foreign Host header got in"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed and could not "
                    "be (`make test` runs `apt-get install chromium`, which needs root or sudo)")
def test_the_ui_shows_the_run_its_curves_metrics_and_pictures(server, project):
    from playwright.sync_api import sync_playwright

    _, runs = project.runs()
    run = max((r for r in runs if "sweep" not in r.data.tags and "mlflow.parentRunId" not in
               r.data.tags), key=lambda r: int(r.data.params["train.epochs"]))
    page_of = f"{server}/#/experiments/{run.info.experiment_id}/runs"
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)

            def show(path: str, *texts: str, screenshot: str | None = None) -> None:
                page.goto(f"{page_of}{path}")
                for text in texts:
                    page.get_by_text(text, exact=True).first.wait_for(state="visible")
                if screenshot:
                    page.screenshot(path=SCREENSHOTS / screenshot)

            show("", run.info.run_name, screenshot="mlflow-experiment.png")
            show(f"/{run.info.run_id}", "test_accuracy", "overfitting_gap", "train.epochs")
            show(f"/{run.info.run_id}/model-metrics", "accuracy")
            page.get_by_role("button", name="Close", exact=True).last.click()  # the assistant
            page.get_by_placeholder("Search metric charts").fill("^(val_)?(accuracy|loss)$|gap$")
            for chart in ("accuracy", "val_accuracy", "loss", "val_loss", "train_val_gap",
                          "overfitting_gap"):
                page.get_by_text(chart, exact=True).first.wait_for(state="visible")
            # Drawn, not still loading: a plotted line in each of the five curve charts.
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 5")
            page.screenshot(path=SCREENSHOTS / "mlflow-run-curves.png")
            show(f"/{run.info.run_id}/artifacts", "plots", "history.csv", "metrics.json")
            page.get_by_text("plots", exact=True).first.click()
            page.get_by_text("learning_curves.png", exact=True).first.click()
            page.locator("img[src^='blob:']").first.wait_for(state="visible")  # the preview
            page.screenshot(path=SCREENSHOTS / "mlflow-run-pictures.png")
        finally:
            browser.close()
