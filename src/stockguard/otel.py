"""The OpenTelemetry side of ``stockguard.tracing``: imported only when traces are on.

``Tracing`` puts its spans in by wrapping, once, at start-up: the ASGI app
(``Tracing.http``), the engine's reserve/confirm/release and the store's
``transaction`` (``Tracing.instrument``, which replaces them on those objects only), and
``tracing.batch`` for the batch writer (``Tracing.activate``). Nothing else in the code
knows about traces, so turning them off is not wrapping at all.

Spans use the provider given (the tests' in-memory exporter, or the SDK provider
``provider_for`` builds for ``serve``), never the global one, so a FastAPI or library
instrumentation configured elsewhere in the process is neither fed nor disturbed.
A transaction outside any traced work (the expiry sweep, the live audit) makes no span:
a root span per sweep a second would bury the requests.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockguard import __version__, domain, tracing
from stockguard.engine import Engine
from stockguard.service.middleware import route_label
from stockguard.tracing import Apply, TracesMode

OTLP_EXPORTER_MODULES = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
SCOPE = "stockguard"
"""The instrumentation scope every span names."""
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


class MissingExporter(RuntimeError):
    """``traces = "otlp"`` without an OTLP exporter package installed."""


def provider_for(mode: TracesMode) -> TracerProvider:
    """The SDK provider of one ``serve`` process: spans batched off the event loop's
    thread to ``mode``'s exporter. The standard ``OTEL_*`` variables apply (sampler,
    endpoint, headers, service name, batch sizes)."""
    resource = Resource.create({"service.version": __version__, "process.pid": os.getpid()})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "stockguard"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter_for(mode)))
    return provider


def exporter_for(mode: TracesMode) -> SpanExporter:
    """``mode``'s exporter. OTLP's packages are not dependencies of stockguard (HTTP or
    gRPC, each with its own dependencies): whichever is installed is used."""
    if mode == "console":
        return ConsoleSpanExporter(out=sys.stdout)  # stdout now: its default is import time's
    for module in OTLP_EXPORTER_MODULES:
        try:
            found = importlib.import_module(module)
        except ImportError:
            continue
        exporter: SpanExporter = found.OTLPSpanExporter()
        return exporter
    raise MissingExporter(
        "traces = otlp needs an OTLP exporter: pip install opentelemetry-exporter-otlp-proto-http"
    )


class Tracing:
    """The spans of one process, from ``provider``."""

    def __init__(self, provider: trace.TracerProvider, *, owned: bool = False) -> None:
        """``owned``: this object made ``provider`` and shuts it down (flushing) in
        ``close``; a provider given by the caller is the caller's to shut down."""
        self.provider = provider
        self.owned = owned
        self.tracer = provider.get_tracer(SCOPE, __version__)
        self._batch = _BatchSpans(self.tracer)

    def activate(self) -> None:
        tracing.batch = self._batch

    def close(self) -> None:
        if tracing.batch is self._batch:
            tracing.batch = None
        if self.owned and isinstance(self.provider, TracerProvider):
            self.provider.shutdown()

    # ------------------------------------------------------------------ HTTP

    def http(self, app: ASGIApp) -> ASGIApp:
        """``app`` inside a server span per HTTP request, named by route template."""
        tracer = self.tracer

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            method = scope.get("method", "")
            answered = {"status": 0}

            async def observed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    answered["status"] = message["status"]
                await send(message)

            carrier = _propagated_headers(scope)
            with tracer.start_as_current_span(
                method,
                context=propagate.extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope.get("path", "")},
            ) as span:
                await app(scope, receive, observed)
                route = route_label(scope)
                span.update_name(f"{method} {route}")
                # One call per span: each takes the span's lock (a measurable part of it)
                span.set_attributes(
                    {"http.route": route, "http.response.status_code": answered["status"]}
                )
                if answered["status"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))

        return traced

    # ------------------------------------------------------------------ engine and store

    def instrument(self, engine: Engine) -> None:
        """Spans around ``engine``'s reservation calls and its store's transactions."""
        strategy = engine.strategy_name
        for name in ("reserve", "confirm", "release"):
            setattr(engine, name, self._traced_call(name, getattr(engine, name), strategy))
        store = engine.store
        system = getattr(getattr(store, "backend", None), "name", "memory")
        traced = self._traced_transaction(store.transaction, system)
        setattr(store, "transaction", traced)  # noqa: B010 - mypy refuses assigning a method

    def _traced_call(
        self, name: str, call: Callable[..., Awaitable[Any]], strategy: str
    ) -> Callable[..., Awaitable[Any]]:
        tracer = self.tracer
        span_name = f"stockguard.{name}"
        id_name = "stockguard.order_id" if name == "reserve" else "stockguard.reservation_id"

        async def traced(*args: Any, **kwargs: Any) -> Any:
            attributes = {"stockguard.strategy": strategy}
            if args:
                attributes[id_name] = str(args[0])
            with tracer.start_as_current_span(
                span_name,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                with _outcome(span):
                    result = await call(*args, **kwargs)
                if name == "reserve":
                    span.set_attribute(
                        "stockguard.outcome", "held" if result.created else "replayed"
                    )
                else:
                    span.set_attribute("stockguard.outcome", result.status.value)
                return result

        return traced

    def _traced_transaction(
        self, transaction: Callable[..., AbstractAsyncContextManager[Any]], system: str
    ) -> Callable[..., AbstractAsyncContextManager[Any]]:
        tracer = self.tracer

        @asynccontextmanager
        async def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            if not trace.get_current_span().get_span_context().is_valid:
                async with transaction(*args, **kwargs) as tx:
                    yield tx
                return
            with tracer.start_as_current_span(
                "stockguard.transaction",
                attributes={
                    "db.system.name": system,
                    "stockguard.read_only": bool(kwargs.get("read_only", False)),
                },
            ):
                async with transaction(*args, **kwargs) as tx:
                    yield tx

        return traced


class _BatchSpans:
    """``tracing.BatchSpans`` on a tracer."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def link(self) -> object:
        found = trace.get_current_span().get_span_context()
        return found if found.is_valid else None

    async def traced(
        self, writer: str, apply: Apply, items: Sequence[Any], links: Sequence[object]
    ) -> Sequence[object]:
        with self.tracer.start_as_current_span(
            f"stockguard.batch {writer}",
            context=otel_context.Context(),  # its own trace: it serves many
            links=[Link(link) for link in links if isinstance(link, trace.SpanContext)],
            attributes={"stockguard.batch.size": len(items)},
        ):
            return await apply(items)


@contextmanager
def _outcome(span: trace.Span) -> Iterator[None]:
    """A refusal is an answer (its kind on the span); anything else is an error."""
    try:
        yield
    except domain.StockguardError as error:
        span.set_attribute("stockguard.outcome", error.kind)
        if isinstance(error, domain.StoreUnavailable):
            span.set_status(Status(StatusCode.ERROR, error.kind))
        raise
    except Exception as error:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise


def _propagated_headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in _PROPAGATED
    }
