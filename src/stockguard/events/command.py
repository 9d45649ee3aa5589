"""``stockguard relay`` and ``stockguard events tail`` (docs/events.md).

``relay`` runs the relay alone, for shops that keep it out of the web workers (set
``[events] relay = false`` on ``serve`` then; both at once are safe, the lease lets one
work). ``events tail`` follows the pull feed for a person at a terminal: one coloured line
per event, long polls so nothing is missed between two requests, reconnecting on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from stockguard.config import Settings
from stockguard.engine import DEFAULT_DATABASE_URL

events_app = typer.Typer(help="Stock events: follow the pull feed.", no_args_is_help=True)
err = Console(stderr=True)

TAIL_WAIT_S = 25.0
TAIL_PAGE = 500
RECONNECT_S_MAX = 10.0
STYLE = {
    "stock.sold_out": "bold red",
    "stock.back_in_stock": "bold green",
    "stock.low": "yellow",
    "stock.changed": "blue",
    "reservation.held": "cyan",
    "reservation.confirmed": "green",
    "reservation.released": "magenta",
    "reservation.expired": "magenta",
}


def relay_command(
    db: Annotated[
        str,
        typer.Option("--db", envvar="STOCKGUARD_DATABASE_URL", help="Database URL."),
    ] = DEFAULT_DATABASE_URL,
    nats: Annotated[
        str | None,
        typer.Option("--nats", help="NATS URL of the JetStream sink (else [events] nats_url)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file ([events] table).")
    ] = None,
) -> None:
    """Run the events relay alone until SIGINT/SIGTERM: number outbox events, deliver
    them to the webhook endpoints and NATS, prune. One per database works at a time (a
    lease); start several for a quick takeover."""
    try:
        settings = Settings.load(config, database_url=db)
    except ValueError as invalid:
        err.print(f"stockguard: invalid settings: {invalid}")
        raise typer.Exit(2) from None
    events = settings.events
    if nats is not None:
        events = events.model_copy(update={"nats_url": nats})
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run_relay(settings.database_url, events))
    err.print("relay stopped")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (``granian[uvloop]`` brings it, as for ``serve``): its
    transports cost the relay's sockets (the database's and the endpoints') less CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop
        return None
    return uvloop.new_event_loop


async def _run_relay(url: str, events: Any) -> None:
    import logging

    from stockguard.events.relay import Relay
    from stockguard.stores.sql.store import SqlStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = SqlStore.open(url, pool_size=4)
    try:
        await store.migrate()
        relay = Relay(store, events)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        relay.start()
        await stop.wait()
        await relay.stop()
    finally:
        await store.close()


@events_app.command("tail")
def tail(
    url: Annotated[
        str, typer.Option("--url", envvar="STOCKGUARD_URL", help="The service's base URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="STOCKGUARD_ADMIN_TOKEN", help="The admin token."),
    ] = None,
    types: Annotated[
        str | None,
        typer.Option("--types", help="all, stock, reservation.* or comma-separated types."),
    ] = None,
    after: Annotated[
        int | None,
        typer.Option("--after", help="Start after this event id (default: from now on)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after printing this many events.")
    ] = None,
) -> None:
    """Print the events feed live, one line per event, until Ctrl-C."""
    if token is None:
        err.print("stockguard: events tail needs --token or STOCKGUARD_ADMIN_TOKEN")
        raise typer.Exit(2)
    out = Console(highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(out, url.rstrip("/"), token, types, after, count))


async def _tail(
    out: Console, url: str, token: str, types: str | None, after: int | None, count: int | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    printed, failures = 0, 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TAIL_WAIT_S + 10) as client:
        while count is None or printed < count:
            params: dict[str, Any] = {"after": after or 0, "limit": TAIL_PAGE}
            params["wait_s"] = 0 if after is None else TAIL_WAIT_S
            if types:
                params["types"] = types
            try:
                answer = await client.get("/v1/events", params=params)
            except httpx.TransportError as error:
                failures += 1
                delay = min(RECONNECT_S_MAX, 0.5 * 2**failures)
                err.print(
                    f"[dim]{escape(str(error) or type(error).__name__)}; again in {delay:.0f} s[/]"
                )
                await asyncio.sleep(delay)
                continue
            if answer.status_code != 200:
                detail = answer.json().get("detail", answer.text) if answer.content else ""
                err.print(f"[red]{answer.status_code}[/] {escape(str(detail))}")
                raise typer.Exit(1)
            failures = 0
            page = answer.json()
            if after is None:  # the first call: start from the newest event
                after = int(page["last_id"])
                err.print(f"[dim]following {escape(url)}/v1/events after id {after}[/]")
                continue
            for event in page["events"]:
                out.print(line_of(event))
                printed += 1
                if count is not None and printed >= count:
                    return
            after = int(page["next_after"])


def line_of(event: dict[str, Any]) -> str:
    """One event as a line of rich markup: id, time, type, subject, what changed."""
    when = datetime.fromtimestamp(event["at_ms"] / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    kind = str(event["type"])
    data: dict[str, Any] = event.get("data") or {}
    levels = data.get("levels") or {}
    if event.get("sku"):
        subject = str(event["sku"])
        level = levels.get(subject, {})
        what = f"available {level.get('available')} (on hand {level.get('on_hand')})"
        if kind == "stock.changed":
            what = f"{data.get('delta'):+} {data.get('reason')}; " + what
        if kind == "stock.low":
            what += f" <= {data.get('threshold')}"
    else:
        subject = str(event.get("reservation_id"))
        lines = ", ".join(f"{x['sku']}x{x['quantity']}" for x in data.get("lines", []))
        what = f"order {data.get('order_id')}: {lines}" + (
            " (partial)" if data.get("partial") else ""
        )
    style = STYLE.get(kind, "white")
    return f"[dim]#{event['id']} {when}[/] [{style}]{kind:<22}[/] {escape(subject)}  {escape(what)}"


@events_app.command("latency")
def latency(
    db: Annotated[
        str, typer.Option("--db", envvar="STOCKGUARD_DATABASE_URL", help="Database URL.")
    ] = DEFAULT_DATABASE_URL,
    strategy: Annotated[str, typer.Option(help="Strategy of the sale.")] = "coalescing",
    rate: Annotated[float, typer.Option(help="Buyers arriving per second.", min=1)] = 5_000,
    requests: Annotated[int, typer.Option(help="Buyers.", min=1, max=1_000_000)] = 10_000,
    units: Annotated[int, typer.Option(help="Units of the hot SKU.", min=1)] = 1_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Measure commit -> webhook latency: a flash sale here, a real `stockguard relay`,
    a local receiver (docs/benchmarks.md). Use an empty database: the sale's SKU is
    FLASH-1."""
    import json
    import tempfile

    from stockguard.events.latency import run

    with tempfile.TemporaryDirectory(prefix="stockguard-latency-") as work:
        figures = asyncio.run(run(db, strategy, rate, requests, units, Path(work)))
    if as_json:
        typer.echo(json.dumps(figures))
        return
    out = Console(highlight=False)
    out.print(
        f"{figures['events']} events ({figures['held']} holds) at {rate:g} buyers/s: "
        f"commit -> webhook p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, "
        f"p99 {figures['p99_ms']:.0f} ms, max {figures['max_ms']:.0f} ms"
    )
