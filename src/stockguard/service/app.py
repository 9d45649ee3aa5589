"""The FastAPI application: ``create_app(settings)`` wires routes, auth, errors and edge.

The lifespan opens the engine (migrating first unless told not to), starts the expiry
sweeper, and on shutdown stops the sweeper (letting a sweep in progress finish) before
closing the engine's pools. Uvicorn calls the lifespan shutdown only after in-flight
requests have been answered, so nothing is cut in the middle.

Worker processes build their app with ``create_app_from_env``: their settings are the
ones ``serve`` resolved and wrote for them (see ``stockguard.service.server``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from prometheus_client import multiprocess
from starlette.types import Receive, Scope, Send

from stockguard import __version__, heap, metrics
from stockguard.admin import admin_router
from stockguard.config import Settings
from stockguard.engine import Engine
from stockguard.events.relay import Relay
from stockguard.service import (
    docs,
    errors,
    routes_audit,
    routes_events,
    routes_kits,
    routes_locations,
    routes_ops,
    routes_products,
    routes_reservations,
    routes_stock,
)
from stockguard.service.auditor import Auditor
from stockguard.service.auth import Tokens, require_admin, require_api
from stockguard.service.deps import reject_unknown_query
from stockguard.service.errors import AUTH_KINDS_ADMIN, AUTH_KINDS_API, declared
from stockguard.service.lean import LeanRoutes
from stockguard.service.middleware import RequestEdge
from stockguard.service.sweeper import Sweeper
from stockguard.service.watch import SkuWatch

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when traces are on
    from opentelemetry.trace import TracerProvider

    from stockguard.otel import Tracing

logger = logging.getLogger("stockguard.service")

DESCRIPTION = """Inventory reservations that never oversell (docs/design.md#api).

Errors are RFC 9457 problem details (`application/problem+json`); each `type` names one
kind of problem. Admin routes need `Authorization: Bearer <admin token>`; reservation and
stock-read routes need the API token only when the server has one configured."""


class StockguardApp(FastAPI):
    """FastAPI with the request edge and the lean hot routes in front of it.

    Every HTTP request passes ``RequestEdge`` (body limit, deadline, metrics, log line)
    first; then ``LeanRoutes`` answers the hot routes itself or hands the request to the
    FastAPI stack, which answers everything else (and documents every route).
    """

    lean = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        edge = self.__dict__.get("_edge")
        if edge is None:
            settings: Settings = self.state.settings
            edge = RequestEdge(
                super().__call__,
                body_read_s_max=settings.body_read_s_max,
                lean=LeanRoutes(self._engine, self.state.tokens) if self.lean else None,
            )
            if self.state.tracing is not None:  # decided once: off wraps nothing
                edge = self.state.tracing.http(edge)
            self.__dict__["_edge"] = edge
        await edge(scope, receive, send)

    def _engine(self) -> Engine:
        engine: Engine = self.state.engine
        return engine


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    lean: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> StockguardApp:
    """The service for ``settings``.

    ``engine``: an engine the caller opened and will close (to embed the service, or to
    serve a strategy with options); without it the lifespan opens one from ``settings``.
    ``lean=False`` sends every request through FastAPI (the tests compare both paths).
    ``tracer_provider``: spans go there (traces on whatever ``settings.traces`` says;
    the caller shuts it down); without it ``settings.traces`` decides (stockguard.tracing).
    """
    app = StockguardApp(
        title="stockguard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served from the package by docs.install: no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.given_engine = engine
    app.state.given_tracer_provider = tracer_provider
    app.state.tracing = None
    app.state.tokens = Tokens(settings.admin_token, settings.api_token)
    app.state.trusted_proxies = settings.trusted_proxies()  # admin/session.py
    if settings.admin_token is None:
        logger.warning("no admin token configured: every admin route answers 401")

    strict_query = Depends(reject_unknown_query)
    admin_only: dict[str, Any] = {
        "dependencies": [Depends(require_admin), strict_query],
        "responses": declared(*AUTH_KINDS_ADMIN),
    }
    api: dict[str, Any] = (
        {
            "dependencies": [Depends(require_api), strict_query],
            "responses": declared(*AUTH_KINDS_API),
        }
        if settings.api_token is not None
        else {"dependencies": [strict_query]}
    )
    for module in (
        routes_reservations,
        routes_stock,
        routes_products,
        routes_kits,
        routes_audit,
        routes_events,
        routes_locations,
    ):
        app.include_router(module.api_router, **api)
        app.include_router(module.admin_router, **admin_only)
    app.include_router(routes_ops.router)  # probes may add parameters of their own
    # --- admin web page (docs/design.md#admin-page) ---------------------------------------
    # The admin page's APIRouter (src/stockguard/admin/) is included HERE:
    #     app.include_router(admin_router)
    app.include_router(admin_router())
    # -------------------------------------------------------------------------------------

    docs.install(app)
    errors.install(app)
    app.lean = lean
    app.openapi = _openapi_with_problem_media_type(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> StockguardApp:
    """The server's factory in every worker process: the settings ``serve`` resolved."""
    return create_app(Settings.for_worker())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    given: Engine | None = app.state.given_engine
    engine = given or await Engine.open(
        settings.database_url, settings.strategy, **settings.engine_options()
    )
    app.state.engine = engine
    app.state.strategy_events = metrics.StrategyEventMirror(engine.strategy_name, engine.events)
    sweeper = Sweeper(engine, settings.sweep_interval_s, app.state.strategy_events)
    sweeper.start()
    auditor = app.state.auditor = Auditor(engine, settings.audit_interval_s)
    auditor.start()
    relay = app.state.relay = (
        Relay(engine.store, settings.events) if settings.events.relay else None
    )
    if relay is not None:
        relay.start()  # every process stands by; the lease lets one work (events/relay.py)
    shared_dir = os.environ.get(routes_ops.MULTIPROC_DIR_ENV)
    watch = app.state.watch = SkuWatch(engine, Path(shared_dir) if shared_dir else None)
    watch.start()
    traced = app.state.tracing = _traced(app, settings, engine)
    if given is None:
        heap.settle()  # start-up is over: the collector as a long-running server wants it
    try:
        yield
    finally:
        try:
            if relay is not None:
                await relay.stop()
            feed_watch = getattr(app.state, "feed_watch", None)
            if feed_watch is not None:
                await feed_watch.stop()
            await watch.stop()
            await auditor.stop()
            await sweeper.stop()
        finally:
            if given is None:
                await engine.close()
            if traced is not None:
                traced.close()  # after the engine: the last batches' spans are flushed too
            if os.environ.get(routes_ops.MULTIPROC_DIR_ENV):
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _traced(app: FastAPI, settings: Settings, engine: Engine) -> Tracing | None:
    """Traces of this process, when on: the OpenTelemetry SDK is imported here and only
    here, and the engine and store are wrapped once (stockguard.tracing)."""
    provider: TracerProvider | None = app.state.given_tracer_provider
    if provider is None and settings.traces == "off":
        return None
    from stockguard import otel

    traced = otel.Tracing(provider or otel.provider_for(settings.traces), owned=provider is None)
    traced.instrument(engine)
    traced.activate()
    return traced


def _openapi_with_problem_media_type(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents every response model as ``application/json``; error answers are
    ``application/problem+json``, so the document says so."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if str(status)[0] in "45" and "application/json" in content:
                            content[errors.PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
