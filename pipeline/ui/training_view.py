"""The MLflow UI in its training view, curves that belong together on one chart: defaults for
what MLflow 3.17 keeps only in the browser, served in front of MLflow's own page.

MLflow's UI keeps three choices in the browser's localStorage, none on the server: its mode
(GenAI until someone clicks "Model training"; the `workflowType` URL parameter holds for one
page, the experiment's `mlflow.experimentKind` tag does not decide), a run page's charts (one
panel per metric, alphabetical) and the runs table's columns (no metric). So the servers' first
page, `/`, is MLflow's index.html with one script before MLflow's own: where the browser holds
no value for one of those keys, MLflow reads ours; once the user changes one, MLflow stores the
choice and it wins. Every way into the UI loads `/` (its routes are in the URL's #fragment).

This module is the one place that knows MLflow's storage keys. If a later MLflow renames them,
the UI is plainly MLflow's own again, and the run's learning-curve picture (`plots/`) remains.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pipeline.tracking import names

MODE_KEY = "mlflow.workflowType_v1"
TRAINING = "machine_learning"
_STORE = r"^MLflowLocalStorage-1\.1-"  # MLflow's prefix for a page's saved state
RUN_CHARTS = _STORE + r"RunPage-[0-9a-f]+-model-chartUIState$"  # a run's "Model metrics" tab
RUNS_TABLE = _STORE + r"ExperimentPage-.+-ReactComponentState$"  # an experiment's runs

# A run page's first section: each pair on one chart, the training digits as the model stands
# at the epoch's end against validation's (what the gap compares), then the gap itself.
CURVES = {
    "accuracy: train vs validation": ["train_sample_accuracy", names.VAL_ACCURACY],
    "loss: train vs validation": ["train_sample_loss", "val_loss"],
    "overfitting: train - validation accuracy": ["train_val_gap"],
}
# Then the other per-epoch curves; the single numbers in a folded section of their own (the
# run's Overview lists them too). Metrics not named here go where MLflow puts them, after these.
EPOCHS = ["accuracy", "loss", "learning_rate", "epoch_time_s"]
RESULTS = [
    names.TEST_ACCURACY,
    names.TEST_LOSS,
    names.TRAIN_TEST_GAP,
    names.TRAIN_TEST_GAP_EVALUATED,
    names.TRAIN_ACCURACY,
    names.TRAIN_ACCURACY_EVALUATED,
    names.BEST_VAL_LOSS_EPOCH,
    names.BEST_VAL_ACCURACY_EPOCH,
    names.EPOCHS_TRAINED,
    names.KEPT_EPOCH,
]
# The runs table's metric columns: the champion's criterion, the test, the overfitting
COLUMNS = [names.VAL_ACCURACY, names.TEST_ACCURACY, names.TRAIN_TEST_GAP]

_X_STEPS = {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""}

_SCRIPT = """<script>/* pipeline.ui.training_view: defaults for MLflow's browser-kept choices */
(() => {
  const defaults = %s;
  const read = Storage.prototype.getItem;
  Storage.prototype.getItem = function (key) {
    const value = read.call(this, key);
    if (value !== null || this !== window.localStorage) return value;
    const found = defaults.find(([pattern]) => new RegExp(pattern).test(key));
    return found ? found[1] : null;
  };
})();
</script>"""


def _section(uuid: str, name: str, shown: bool = True) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "name": name,
        "display": shown,
        "isReordered": True,
        "deleted": False,
        "isGenerated": False,
    }


def _chart(section: str, title: str, keys: list[str], kind: str = "LINE") -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": f"pipeline-{keys[0]}",
        "type": kind,
        "runsCountToCompare": 10,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": title,
        "metricKey": keys[0],
    }
    if kind == "LINE":
        card |= {
            "selectedMetricKeys": keys,
            "lineSmoothness": 0,
            "xAxisScaleType": "linear",
            "scaleType": "linear",
            "range": {},
            "xAxisKey": "step",
            "selectedXAxisMetricKey": "",
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
        }
    return card


def run_charts() -> dict[str, Any]:
    """A run page's "Model metrics" layout: the curves together, then the rest."""
    charts = [_chart("curves", title, keys) for title, keys in CURVES.items()]
    # A metric already on a chart above gets no panel of its own: MLflow adds one for every
    # metric that no chart names as its first, so these are named, and hidden.
    shown = {keys[0] for keys in CURVES.values()}
    for keys in CURVES.values():
        for key in set(keys) - shown:
            charts.append(
                _chart("curves", key, [key]) | {"uuid": f"pipeline-{key}", "deleted": True}
            )
    charts += [_chart("epochs", key, [key]) for key in EPOCHS]
    charts += [_chart("results", key, [key], "BAR") for key in RESULTS]
    return {
        "isAccordionReordered": True,
        "compareRunCharts": charts,
        "compareRunSections": [
            _section("curves", "Learning curves"),
            _section("epochs", "Per epoch"),
            _section("results", "Results (single numbers)", shown=False),
        ],
        "autoRefreshEnabled": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


def runs_table() -> dict[str, Any]:
    """An experiment page as MLflow 3.17 first saves it, with the metrics as its columns."""
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        # MLflow's Source and Dataset columns left out: wide, they push the metrics off-screen
        "selectedColumns": ["attributes.`Models`", *(f"metrics.`{key}`" for key in COLUMNS)],
        "columnOrder": [],
        "columnWidths": {},
        "runsExpanded": {},
        "runsPinned": [],
        "runsHidden": [],
        "runsVisibilityMap": {},
        "runsHiddenMode": "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        "autoRefreshEnabled": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


def defaults() -> list[tuple[str, str]]:
    """(a pattern of storage keys, the value MLflow reads where the browser has none)."""
    return [
        (f"^{re.escape(MODE_KEY)}$", json.dumps(TRAINING)),
        # the assistant's panel opens by itself on a first visit: count it as done
        (r"^mlflow\.assistant\.fab\.autoOpenedOnFirstLoad_v1$", "true"),
        (RUN_CHARTS, json.dumps(run_charts())),
        (RUNS_TABLE, json.dumps(runs_table())),
    ]


@functools.cache
def script() -> str:
    """The <script> that gives MLflow's page these defaults."""
    return _SCRIPT % json.dumps(defaults()).replace("</", "<\\/")


def page(index_html: str) -> str:
    """MLflow's index.html with the script first in its <head>."""
    head = "<head>"
    if head not in index_html:
        raise ValueError("MLflow's index.html has no <head>: is this MLflow's UI?")
    return index_html.replace(head, head + script(), 1)


def with_training_view(fastapi_app: Any) -> Any:
    """`fastapi_app` (MLflow's) with `/` answered by MLflow's page plus the script, matched
    before MLflow's own route (Starlette tries its routes in order)."""
    from mlflow.server.handlers import _add_static_prefix
    from starlette.routing import Route

    fastapi_app.router.routes.insert(0, Route(_add_static_prefix("/"), _index, methods=["GET"]))
    return fastapi_app


@functools.cache
def _index_html() -> str:
    from pathlib import Path

    from mlflow.server import app as flask_app

    return page(
        (Path(flask_app.root_path) / str(flask_app.static_folder) / "index.html").read_text()
    )


async def _index(request: Any) -> Any:
    from starlette.responses import HTMLResponse

    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache"})
