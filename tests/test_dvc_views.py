"""DVC's own views of the project as its users see them: `dvc plots show` draws the learning
curves, the gap and the confusion matrix (and the PNGs), offline; `dvc exp show` in a terminal
120 columns wide shows the accuracies, the gap and the best epoch. The e2e tests read the
session's trained project (conftest's `project`) without changing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import PipelineError
from pipeline.ui import plots_html

from .helpers import ROOT
from .helpers.browser import CHROMIUM, MISSING, SCREENSHOTS, TIMEOUT_MS
from .helpers.project import Project, sh

SCREENSHOT = SCREENSHOTS / "dvc-plots-offline.png"
CURVES = ("accuracy", "loss", "train_val_gap", "confusion")  # dvc.yaml's top-level plots
PICTURES = tuple(
    f"reports/plots/{name}.png"
    for name in ("confusion_matrix", "learning_curves", "misclassified")
)
COMPARED = ("test_accuracy", "val_accuracy", "overfitting_gap", "best_val_loss_epoch")


def test_committed_plots_page_is_what_the_generator_makes():
    pytest.importorskip("vl_convert", reason="vl-convert-python is in the dev extra")
    committed = (ROOT / plots_html.TEMPLATE).read_text()
    assert committed == plots_html.page(*plots_html.bundle()), (
        "the committed .dvc/plots.html is stale: run `make plots-html` and commit it"
    )
    assert "{plot_divs}" in committed and "{scripts}" not in committed  # no CDN tags


def test_plots_page_refuses_a_bundle_that_would_break_it():
    with pytest.raises(PipelineError, match=r"holds \['</script'\].*constraints.txt"):
        plots_html.page("const a = '</script>';", "test")


@pytest.mark.e2e
def test_plots_show_draws_the_curves_and_confusion_matrix_only(project: Project):
    shown = json.loads(project.sh("dvc", "plots", "show", "--json"))
    assert set(shown["data"]) == {*CURVES, *PICTURES}
    # Before, history.csv and predictions.csv were stage plots too: DVC drew each column,
    # weights_kept and each test digit's probability as curves.
    curves = {
        plot: {row.get("field") for row in shown["data"][plot][0]["content"]["data"]["values"]}
        for plot in CURVES[:3]
    }
    assert curves == {
        "accuracy": {"train_sample_accuracy", "accuracy", "val_accuracy"},
        "loss": {"train_sample_loss", "loss", "val_loss"},
        "train_val_gap": {None},  # one curve: DVC names no field
    }


@pytest.mark.e2e
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_plots_page_draws_offline(project: Project, tmp_path, browser_page):
    project.sh("dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    page_file = tmp_path / "plots" / "index.html"
    assert "cdn.jsdelivr" not in page_file.read_text()
    left, errors = _open_offline(browser_page, page_file)
    assert left == [], "the page asked the network for these"
    assert errors == [], "the page's scripts failed"


def _open_offline(page, page_file: Path) -> tuple[list[str], list[str]]:
    """Open `page_file` with every request but file:// refused; wait until each Vega chart
    is drawn and each PNG loaded; screenshot it. The requests refused, the script errors."""
    left: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def route(found) -> None:
        if found.request.url.startswith("file://"):
            found.continue_()
        else:
            left.append(found.request.url)
            found.abort()

    page.route("**/*", route)
    page.goto(page_file.as_uri())
    for plot in CURVES:  # vega-embed draws into the plot's div: an svg or a canvas
        page.wait_for_selector(f"div#{plot} svg, div#{plot} canvas", timeout=TIMEOUT_MS)
    loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth > 0)")
    assert loaded == [True] * len(PICTURES), "a PNG of reports/plots did not load"
    page.screenshot(path=SCREENSHOT, full_page=True)
    return left, errors


@pytest.mark.e2e
def test_exp_show_in_120_columns_shows_accuracies_gap_and_best_epoch(project: Project):
    table = sh(project.path, project.env | {"COLUMNS": "120"}, "dvc", "exp", "show")
    header = next(line for line in table.splitlines() if "Experiment" in line)
    in_view = header[:120]  # what a terminal 120 columns wide shows (`less -S`, DVC's pager)
    assert [name for name in COMPARED if name in in_view] == list(COMPARED), in_view
    assert "per_class_accuracy.9" in header  # the rest further right, still there
