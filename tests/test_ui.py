"""The MLflow UI as `make ui` starts it, on a store holding a real pipeline run, in headless
Chromium (Debian's package; `make test-all` installs it). Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.common.entry import stop_group
from pipeline.ui import __main__ as ui

from .helpers.browser import CHROMIUM, MISSING, SCREENSHOTS, TIMEOUT_MS
from .helpers.processes import free_port, with_ctrl_c

pytestmark = [pytest.mark.e2e, pytest.mark.server]  # a real run, shown by a real MLflow server
START_S = 90
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
def shown(project, tmp_path_factory):
    """The session's trained project with a second run (another seed), for the compare page."""
    proj = project.copy_to(tmp_path_factory.mktemp("ui") / "project")
    proj.sh("dvc", "exp", "run", "-S", "train.epochs=1", "-S", "train.seed=7")
    return proj


def _start(proj, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m pipeline.ui` in `proj`, on a free loopback port, answering /health."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            with_ctrl_c([sys.executable, "-m", "pipeline.ui", "--port", str(port)]),
            cwd=proj.path,
            env=proj.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{ui.HOST}:{port}"
    deadline = time.monotonic() + START_S
    while _get(f"{url}/health") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process, grace=20)
            pytest.fail(
                f"the UI did not come up within {START_S} s (exit status "
                f"{process.poll()}):\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.5)
    return process, url


@pytest.fixture(scope="module")
def server(shown, tmp_path_factory):
    """The UI on `shown`; stopped, with every process it started, at the end."""
    process, url = _start(shown, tmp_path_factory.mktemp("ui-log") / "server.log")
    try:
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


def _assert_visible(page, *texts: str) -> None:
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_text(text, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)


def _assert_screenshot(page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / name)
    assert (SCREENSHOTS / name).read_bytes()[:8] == PNG, f"{name} is not a PNG"


# Which of the sidebar's two modes the page shows: the chosen one's label is the darker.
MODE = """() => {
  const label = text => [...document.querySelectorAll('[role=button]')]
    .find(e => e.textContent.trim() === text);
  const genai = label('GenAI'), training = label('Model training');
  if (!genai || !training) return null;
  const darkness = e => getComputedStyle(e.firstElementChild || e).color
    .match(/\\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b);
  return darkness(training) < darkness(genai) ? 'training' : 'genai';
}"""


def _assert_training_view(page, where: str) -> None:
    _assert_visible(page, "Model training")
    assert page.evaluate(MODE) == "training", f"{where}: the UI shows its GenAI view"


def _assert_curves_first(page) -> None:
    """The run's charts open on its learning curves, each pair on one chart, drawn; the
    single numbers are folded away."""
    _assert_visible(
        page,
        "Learning curves",
        "train_sample_accuracy vs val_accuracy",
        "train_sample_loss vs val_loss",
        "overfitting: train - validation accuracy",
    )
    tops = [
        page.get_by_text(text, exact=True).first.bounding_box()["y"]  # type: ignore[index]
        for text in ("Learning curves", "Per epoch", "Results (single numbers)")
    ]
    assert tops == sorted(tops), "the learning curves are not the first section"
    traces = ".js-plotly-plot .scatterlayer .trace"
    page.wait_for_function(f"document.querySelectorAll('{traces}').length >= 5")
    assert not page.get_by_text("test_accuracy_ci_high", exact=True).is_visible()
    _assert_screenshot(page, "mlflow-run-curves.png")


def _assert_compared(page, names: list[str]) -> None:
    """Two runs ticked in the table, compared side by side."""
    for name in names:
        row = page.get_by_role("row").filter(has_text=name).first
        row.get_by_role("checkbox").first.click(force=True)
    page.get_by_role("button", name="Compare").first.click()
    _assert_visible(page, "Comparing 2 Runs from 1 Experiment", *names)
    _assert_screenshot(page, "mlflow-compare.png")


def _assert_picture_previewed(page) -> None:
    """The learning curves picture, opened in the artifacts' tree, is shown decoded."""
    from playwright.sync_api import expect

    page.get_by_text("plots", exact=True).first.click()
    page.get_by_text("learning_curves.png", exact=True).first.click()
    preview = page.locator("img[src^='blob:']").first
    expect(preview).to_be_visible(timeout=TIMEOUT_MS)
    assert preview.evaluate("img => img.complete && img.naturalWidth") > 0, "a broken image"
    _assert_screenshot(page, "mlflow-run-pictures.png")


def _training_runs(proj) -> list:
    _, runs = proj.runs()
    return [r for r in runs if "sweep" not in r.data.tags]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_a_fresh_browser_follows_the_training_view_from_the_front_door(
    server, shown, browser_page
):
    page = browser_page  # a new profile: nothing in its localStorage
    first, run = _training_runs(shown)[-2:]
    page.goto(server)  # the README's address
    _assert_training_view(page, "the home page")
    page.get_by_role("link", name="mnist", exact=True).first.click()
    _assert_visible(page, run.info.run_name)
    _assert_training_view(page, "the experiment's runs")
    for column in ("val_accuracy", "test_accuracy", "overfitting_gap"):
        assert page.get_by_role("columnheader", name=column).count(), f"no {column} column"
    _assert_screenshot(page, "mlflow-experiment.png")

    page.get_by_role("link", name=run.info.run_name, exact=True).first.click()
    _assert_visible(page, "test_accuracy", "train.epochs")
    _assert_training_view(page, "a run's overview")
    page.get_by_text("Model metrics", exact=True).first.click()
    _assert_curves_first(page)
    _assert_training_view(page, "a run's charts")
    page.get_by_text("Artifacts", exact=True).first.click()
    _assert_visible(page, "plots", "history.csv", "metrics.json")
    _assert_picture_previewed(page)

    page.go_back()
    page.go_back()
    page.go_back()
    _assert_visible(page, first.info.run_name)
    _assert_compared(page, [first.info.run_name, run.info.run_name])
    _assert_training_view(page, "the compare page")
    page.get_by_role("link", name="Model registry").first.click()
    _assert_visible(page, "mnist")
    _assert_training_view(page, "the model registry")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_a_choice_the_user_makes_in_the_ui_stands(server, browser_page):
    page = browser_page
    page.goto(server)
    _assert_training_view(page, "the home page")
    page.get_by_role("button", name="GenAI", exact=True).click()
    page.reload()
    _assert_visible(page, "GenAI")
    assert page.evaluate(MODE) == "genai", "the defaults overrode the user's choice"


def test_the_ui_logs_no_requests_and_stops_on_ctrl_c_with_one_line(shown, tmp_path):
    log = tmp_path / "ui.log"
    process, url = _start(shown, log)
    try:
        for _ in range(3):
            assert _get(f"{url}/health") == 200
        os.killpg(process.pid, signal.SIGINT)  # what the terminal's Ctrl-C sends
        status = process.wait(30)
    finally:
        stop_group(process, grace=5)
    out = log.read_text()
    assert status == 0, out
    assert "Traceback" not in out and "GET /health" not in out, out
    assert "Deprecat" not in out, out
    assert out.rstrip().endswith("stopped the MLflow UI"), out
