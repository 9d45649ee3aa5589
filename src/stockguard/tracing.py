"""OpenTelemetry traces: optional (``pip install 'stockguard[otel]'``), off by default, and
free when off.

Traces are chosen once, at start-up (``Settings.traces``). When they are on,
``stockguard.otel`` (the only module that imports the OpenTelemetry SDK) wraps the app,
the engine's methods and the store's ``transaction`` in place, so a request becomes

    POST /v1/reservations                 (HTTP server span, W3C traceparent honoured)
      └ stockguard.reserve                (engine: admission, strategy)
          └ stockguard.transaction        (each database transaction it ran)

and a batching strategy's batch is a span linked to every request span it answered (one
transaction serves many requests), in the trace of the first of them, so a sampler that
follows parents keeps it whenever it keeps one of its requests:

    stockguard.batch coalescing           (links: the stockguard.reserve spans it served)
      └ stockguard.transaction

A trace the sampler leaves out gets no span below its root: with
``OTEL_TRACES_SAMPLER_ARG=0.01`` the other 99 % of requests pay for one unrecorded span.

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
