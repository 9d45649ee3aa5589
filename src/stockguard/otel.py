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
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
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
            span = tracer.start_span(
                method,
                context=propagate.extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope.get("path", "")},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                await app(scope, receive, observed)
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                del error  # no frame -> error -> traceback -> frame cycle (engine.reserve)
                raise
            finally:
                otel_context.detach(token)
                if span.is_recording():
                    route = route_label(scope)
                    span.update_name(f"{method} {route}")
                    span.set_attributes(
                        {"http.route": route, "http.response.status_code": answered["status"]}
                    )
                    if answered["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                span.end()

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
        """``call`` inside a span, unless it runs in a trace the sampler left out (its
        children would be left out too: making them would be all cost, no span)."""
        tracer = self.tracer
        span_name = f"stockguard.{name}"
        id_name = "stockguard.order_id" if name == "reserve" else "stockguard.reservation_id"

        async def traced(*args: Any, **kwargs: Any) -> Any:
            if _sampled_out():
                return await call(*args, **kwargs)
            attributes = {"stockguard.strategy": strategy}
            if args:
                attributes[id_name] = str(args[0])
            span = tracer.start_span(span_name, attributes=attributes)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                result = await call(*args, **kwargs)
                outcome = ("held" if result.created else "replayed") if name == "reserve" else None
                span.set_attribute("stockguard.outcome", outcome or result.status.value)
                return result
            except domain.StockguardError as error:  # a refusal is an answer, not an error
                span.set_attribute("stockguard.outcome", error.kind)
                if isinstance(error, domain.StoreUnavailable):
                    span.set_status(Status(StatusCode.ERROR, error.kind))
                del error  # as engine.reserve: no cycle per refusal
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                del error
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return traced

    def _traced_transaction(
        self, transaction: Callable[..., AbstractAsyncContextManager[Any]], system: str
    ) -> Callable[..., AbstractAsyncContextManager[Any]]:
        """Transactions inside a span when a recorded span is current; otherwise the
        store's own context manager, untouched (sweeps, audits, sampled-out requests)."""
        tracer = self.tracer

        def traced(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
            inner = transaction(*args, **kwargs)
            if not trace.get_current_span().is_recording():
                return inner
            span = tracer.start_span(
                "stockguard.transaction",
                attributes={
                    "db.system.name": system,
                    "stockguard.read_only": bool(kwargs.get("read_only", False)),
                },
            )
            return _InSpan(inner, span)

        return traced


class _InSpan:
    """An async context manager run inside ``span`` (a class, not a generator: no frames
    kept per use)."""

    __slots__ = ("inner", "span", "token")

    def __init__(self, inner: AbstractAsyncContextManager[Any], span: trace.Span) -> None:
        self.inner = inner
        self.span = span
        self.token: object = None

    async def __aenter__(self) -> Any:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            return await self.inner.__aenter__()
        except BaseException:
            self._end(failed=True)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, error: Any, tb: Any) -> bool | None:
        failed = error is not None
        try:
            return await self.inner.__aexit__(kind, error, tb)
        except BaseException:
            failed = True
            raise
        finally:
            self._end(failed)

    def _end(self, failed: bool) -> None:
        if failed:
            self.span.set_status(Status(StatusCode.ERROR))
        otel_context.detach(self.token)  # type: ignore[arg-type]
        self.span.end()


class _BatchSpans:
    """``tracing.BatchSpans`` on a tracer.

    A request's link is kept only when its span is recorded. The batch's span is a child
    of the first recorded request it serves, so a sampler that follows parents (the
    default) keeps it exactly when some request it served was kept, and links every
    recorded request it served; a batch that served none makes no span.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def link(self) -> object:
        current = trace.get_current_span()
        return current.get_span_context() if current.is_recording() else None

    async def traced(
        self, writer: str, apply: Apply, items: Sequence[Any], links: Sequence[object]
    ) -> Sequence[object]:
        served = [link for link in links if isinstance(link, trace.SpanContext)]
        if not served:
            return await apply(items)
        with self.tracer.start_as_current_span(
            f"stockguard.batch {writer}",
            context=trace.set_span_in_context(trace.NonRecordingSpan(served[0])),
            links=[Link(link) for link in served],
            attributes={"stockguard.batch.size": len(items)},
        ):
            return await apply(items)


def _sampled_out() -> bool:
    """The current trace exists and the sampler left it out."""
    current = trace.get_current_span()
    return not current.is_recording() and current.get_span_context().is_valid


def _propagated_headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in _PROPAGATED
    }
