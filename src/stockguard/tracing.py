"""OpenTelemetry traces: optional (``pip install 'stockguard[otel]'``), off by default, and
free when off.

Traces are chosen once, at start-up (``Settings.traces``). When they are on,
``stockguard.otel`` (the only module that imports the OpenTelemetry SDK) wraps the app,
the engine's methods and the store's ``transaction`` in place, so a request becomes

    POST /v1/reservations                 (HTTP server span, W3C traceparent honoured)
      └ stockguard.reserve                (engine: admission, strategy)
          └ stockguard.transaction        (each database transaction it ran)

and a batching strategy's batch is a span of its own, linked to every request span it
answered (one transaction serves many requests, so it cannot be the child of one):

    stockguard.batch coalescing           (links: the stockguard.reserve spans it served)
      └ stockguard.transaction

When they are off, nothing is wrapped and nothing here imports OpenTelemetry: a request
runs exactly the code it runs without this module, except in a batching strategy, which
reads ``batch`` below (None) once per request and once per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol

TracesMode = Literal["off", "otlp", "console"]
Apply = Callable[[Sequence[Any]], Awaitable[Sequence[object]]]


class BatchSpans(Protocol):
    """What ``strategies.batch_writer`` asks of traces, when they are on."""

    def link(self) -> object:
        """The span the caller submits from (kept with its item until the batch)."""

    def traced(
        self, writer: str, apply: Apply, items: Sequence[Any], links: Sequence[object]
    ) -> Awaitable[Sequence[object]]:
        """``apply(items)`` inside a batch span linked to ``links``."""


batch: BatchSpans | None = None
"""Set by ``stockguard.otel.Tracing.activate`` in a process whose traces are on."""
