"""The MLflow apps this project serves: MLflow's own in its training view
(`pipeline.ui.training_view`), and for the team server a /health that also asks the database.

`python -m pipeline.ui` runs `mlflow server --app-name training-view`.

`python -m pipeline.server` runs `mlflow server --app-name team` (`team-basic-auth` with
--auth), the two entry points pyproject.toml declares in the group `mlflow.app`, which MLflow
looks its `--app-name` up in. Each builds MLflow's app as `mlflow server` would (basic auth's
own factory with --auth, which creates the admin on the first start), then puts a /health in
front of MLflow's: MLflow's answers OK while the process runs, even with its database gone, so
a load balancer, a service manager or a person polling it would keep sending requests that
fail. Ours answers 503 until a `SELECT 1` through the tracking store's own engine succeeds,
within PROBE_SECONDS.

`mlflow server` imports this module to see whether an entry is a factory: nothing here imports
MLflow's server until a worker builds its app.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pipeline.ui import training_view

log = logging.getLogger(__name__)

PROBE_SECONDS = 3.0  # a probe that takes longer answers 503: /health never hangs
_state = {"up": True}  # what this worker's last probe found: its log says each change once


def create_training_view_app() -> Any:
    """Entry point `training-view`: MLflow's app (the one `mlflow server` serves under
    uvicorn), opening in its training view."""
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    return training_view.with_training_view(create_fastapi_app(app))


def create_app() -> Any:
    """Entry point `team`: MLflow's app in its training view, with our /health."""
    return with_database_health(create_training_view_app())


def create_auth_app() -> Any:
    """Entry point `team-basic-auth`: MLflow's basic-auth app. Its factory creates the admin
    in each worker when it does not exist yet (`mlflow server` does it beforehand only for the
    name `basic-auth`): `pipeline.server` checks the password first, so a bad one is one clear
    error there, not workers restarting over and over."""
    from mlflow.server import app
    from mlflow.server.auth import create_app as basic_auth

    return with_database_health(training_view.with_training_view(basic_auth(app)))


def with_database_health(fastapi_app: Any) -> Any:
    """`fastapi_app` with our /health matched before MLflow's (Starlette tries its routes in
    order), behind the same middleware: nothing else changes."""
    from mlflow.server.handlers import _add_static_prefix
    from starlette.routing import Route

    route = Route(_add_static_prefix("/health"), health, methods=["GET", "HEAD"])
    fastapi_app.router.routes.insert(0, route)
    _log_lines()
    return fastapi_app


def _log_lines() -> None:
    """This module's lines in the server's output, dated as `pipeline.server`'s are: a worker
    configures MLflow's and uvicorn's loggers, not ours."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False  # one line each, whatever the root logger gets later


async def health(request: Any) -> Any:
    """200 OK while the database answers; 503 when it does not, or not within PROBE_SECONDS.
    The probe runs in a thread of its own limiter: it never waits behind the Flask requests,
    and a hung database costs at most two threads, never the event loop."""
    import anyio
    from starlette.responses import PlainTextResponse

    try:
        with anyio.fail_after(PROBE_SECONDS):
            await anyio.to_thread.run_sync(_probe, abandon_on_cancel=True, limiter=_limiter())
    except Exception as err:  # noqa: BLE001 - any failure means: not healthy
        _changed(False, _first_line(err))
        return PlainTextResponse("the database does not answer", status_code=503)
    _changed(True, "")
    return PlainTextResponse("OK")


def _probe() -> None:
    """`SELECT 1` through the tracking store's engine, the way requests reach the database
    (its pool pings a connection before lending it; the backend URI bounds each connect)."""
    from mlflow.server.handlers import _get_tracking_store
    from sqlalchemy import text

    store: Any = _get_tracking_store()  # a SqlAlchemyStore: the backend is PostgreSQL
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@functools.cache
def _limiter() -> Any:
    """At most two probes at once, apart from the threads that serve MLflow's requests."""
    import anyio

    return anyio.CapacityLimiter(2)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _changed(up: bool, why: str) -> None:
    """Log a change of the database's state in this worker, once, not at every probe."""
    if up != _state["up"]:
        _state["up"] = up
        if up:
            log.warning("/health: the database answers again")
        else:
            log.warning("/health: the database does not answer (%s): answering 503", why)
