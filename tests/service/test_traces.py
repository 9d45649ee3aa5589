"""OpenTelemetry traces (stockguard.tracing, stockguard.otel) with real spans.

The SDK's in-memory exporter records the spans of the real app on a real engine, on
SQLite and PostgreSQL: a reservation is one trace from the HTTP span through the engine
to its transaction (continuing a caller's ``traceparent``); a coalesced batch is a span
whose links are exactly the reservation spans it answered (in the trace of the first),
with the batch's transaction under it; a trace the sampler left out makes no span. With
traces off nothing is wrapped and the SDK is never imported (a fresh interpreter, as
``serve`` starts its workers); ``console`` prints the spans.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stockguard import otel, tracing
from stockguard.service import startup

from .support import ADMIN_TOKEN, AppFactory

BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgres"])
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
BUYERS = 40


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    yield provider, exported
    provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


@BACKENDS
async def test_a_reservation_is_one_trace_from_http_to_its_transaction(
    make_api: AppFactory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exported = exporter
    async with make_api(strategy="conditional", tracer_provider=provider) as api:
        await api.set_stock("TRACED", 1)
        exported.clear()
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        held = await api.client.post(
            "/v1/reservations",
            json={"order_id": "traced-1", "items": [{"sku": "TRACED", "quantity": 1}]},
            headers=caller,
        )
        assert held.status_code == 201, held.text
        refused = await api.reserve("traced-2", {"TRACED": 1})
        assert refused.status_code == 409
    spans = exported.get_finished_spans()

    first, second = named(spans, "POST /v1/reservations")
    assert first.kind is SpanKind.SERVER
    assert first.parent is not None and first.parent.is_remote
    assert first.parent.span_id == int(CALLER_SPAN, 16)
    assert first.context is not None and first.context.trace_id == int(CALLER_TRACE, 16)
    assert first.attributes is not None
    assert first.attributes["http.response.status_code"] == 201
    assert first.attributes["http.route"] == "/v1/reservations"

    (reserve,) = children(spans, first)
    assert reserve.name == "stockguard.reserve"
    assert reserve.attributes is not None
    assert reserve.attributes["stockguard.outcome"] == "held"
    assert reserve.attributes["stockguard.order_id"] == "traced-1"
    transactions = children(spans, reserve)
    assert transactions, "the hold's transaction is under its reserve span"
    assert {span.name for span in transactions} == {"stockguard.transaction"}
    assert all(
        span.context is not None and span.context.trace_id == int(CALLER_TRACE, 16)
        for span in transactions
    )

    (refusal,) = children(spans, second)
    assert refusal.attributes is not None
    assert refusal.attributes["stockguard.outcome"] == "out-of-stock"
    assert refusal.status.status_code is StatusCode.UNSET, "a refusal is an answer"
    assert second.parent is None, "no traceparent: a trace of its own"


@BACKENDS
async def test_a_coalesced_batch_links_every_request_it_served(
    make_api: AppFactory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exported = exporter
    async with make_api(strategy="coalescing", tracer_provider=provider) as api:
        await api.set_stock("BATCHED", BUYERS)
        exported.clear()
        answers = await asyncio.gather(
            *(api.reserve(f"buyer-{n}", {"BATCHED": 1}) for n in range(BUYERS))
        )
        assert [answer.status_code for answer in answers] == [201] * BUYERS
    spans = exported.get_finished_spans()

    reserves = named(spans, "stockguard.reserve")
    assert len(reserves) == BUYERS
    for reserve in reserves:
        assert reserve.parent is not None
        (http,) = [span for span in spans if span.context.span_id == reserve.parent.span_id]  # type: ignore[union-attr]
        assert http.name == "POST /v1/reservations"
        under = {span.name for span in children(spans, reserve)}
        assert under <= {"stockguard.batch coalescing"}, "its transaction is the batch's"

    batches = named(spans, "stockguard.batch coalescing")
    assert batches
    linked = sorted(
        (link.context.trace_id, link.context.span_id) for batch in batches for link in batch.links
    )
    served = sorted(
        (span.context.trace_id, span.context.span_id)  # type: ignore[union-attr]
        for span in reserves
    )
    assert linked == served, "each request span is linked by exactly the batch that served it"
    sizes = [batch.attributes["stockguard.batch.size"] for batch in batches]  # type: ignore[index]
    assert sum(sizes) == BUYERS
    assert max(sizes) > 1, "concurrent buyers were coalesced"
    for batch in batches:
        first = batch.links[0].context
        assert batch.parent is not None, "in the trace of the first request it served"
        assert (batch.parent.trace_id, batch.parent.span_id) == (first.trace_id, first.span_id)
        assert [span.name for span in children(spans, batch)] == ["stockguard.transaction"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_trace_the_sampler_left_out_costs_no_span(
    make_api: AppFactory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A caller's trace flagged not sampled (``-00``): the server span follows it, and
    nothing under it is made, the coalesced batch included."""
    provider, exported = exporter
    async with make_api(strategy="coalescing", tracer_provider=provider) as api:
        await api.set_stock("UNSAMPLED", 1)
        exported.clear()
        held = await api.client.post(
            "/v1/reservations",
            json={"order_id": "quiet", "items": [{"sku": "UNSAMPLED", "quantity": 1}]},
            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"},
        )
        assert held.status_code == 201, held.text
    assert exported.get_finished_spans() == ()


def test_with_traces_off_nothing_is_wrapped_and_the_sdk_is_never_imported() -> None:
    """A fresh interpreter (as serve's workers are) serves holds through the coalescing
    writer with the default settings; FastAPI itself imports the OpenTelemetry API, so
    what must be absent is the SDK and stockguard.otel."""
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from stockguard import tracing
        from stockguard.config import Settings
        from stockguard.service import create_app

        async def main():
            settings = Settings(
                database_url="memory://",
                strategy="coalescing",
                admin_token="{ADMIN_TOKEN}",
                sweep_interval_s=3600,
            )
            assert settings.traces == "off"
            app = create_app(settings)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://sg") as client,
            ):
                stock = await client.put(
                    "/v1/stock/S", json={{"on_hand": 2}},
                    headers={{"Authorization": "Bearer {ADMIN_TOKEN}"}},
                )
                assert stock.status_code == 200, stock.text
                for n in range(3):
                    await client.post(
                        "/v1/reservations",
                        json={{"order_id": f"o-{{n}}", "items": [{{"sku": "S", "quantity": 1}}]}},
                    )
                engine = app.state.engine
                assert app.state.tracing is None and tracing.batch is None
                assert "reserve" not in vars(engine)
                assert "transaction" not in vars(engine.store)

        asyncio.run(main())
        loaded = ("opentelemetry.sdk", "stockguard.otel")
        print(sorted(m for m in sys.modules if m.startswith(loaded)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_console_traces_print_the_spans_of_a_request(
    make_api: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """``traces = "console"`` as serve runs it: the SDK provider stockguard builds, its
    batching processor flushed when the app stops."""
    async with make_api(traces="console") as api:
        await api.set_stock("CONSOLE", 1)
        held = await api.reserve("console-1", {"CONSOLE": 1})
        assert held.status_code == 201, held.text
        assert tracing.batch is not None
    assert tracing.batch is None, "stopping the app turns its traces off"
    spans = [json.loads(part) for part in _json_objects(capsys.readouterr().out)]
    names = {span["name"] for span in spans}
    assert {"POST /v1/reservations", "stockguard.reserve", "stockguard.transaction"} <= names
    assert all(span["resource"]["attributes"]["service.name"] == "stockguard" for span in spans)


def _json_objects(text: str) -> list[str]:
    """The console exporter's spans: indented JSON objects, each from a line ``{`` to
    the next line ``}``."""
    found: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line == "{":
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "}":
                found.append("\n".join(current))
                current = None
    return found


def test_serve_checks_what_the_chosen_traces_need() -> None:
    """Off needs nothing, console the SDK (a dev dependency), otlp an exporter package as
    well, which is the operator's to install: refused with exit code 4 without one."""
    startup.check_traces("off")
    startup.check_traces("console")
    exporter_installed = any(_importable(module) for module in otel.OTLP_EXPORTER_MODULES)
    if exporter_installed:
        startup.check_traces("otlp")
        return
    with pytest.raises(startup.StartupFailure) as refused:
        startup.check_traces("otlp")
    assert refused.value.code == startup.EXIT_MISSING_PACKAGE
    assert "opentelemetry-exporter-otlp" in refused.value.fix


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
