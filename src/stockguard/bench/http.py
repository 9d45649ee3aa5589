"""``stockguard bench-http``: the HTTP path measured from outside, next to its ceiling.

What a shop feels is ``stockguard serve`` over HTTP, not the engine. This runs, in one go
and on one machine:

1. the ceiling: a bare ASGI JSON echo (``bench/echo.py``) on the same server software and
   settings as ``serve``, driven with ``GET`` and with a reservation-sized ``POST``;
2. ``stockguard serve`` on a fresh database: ``/healthz``, reservations on a SKU with
   ample stock (every request a real hold), reservations on a sold-out SKU, confirms and
   releases of the holds the reservation run made;
3. the audit of the database afterwards (I1–I4), and the sold-out SKU's stock.

The client is ``wrk`` (Debian package ``wrk``): C, one event loop per thread, keep-alive
connections; Lua scripts give each request a fresh ``order_id`` and collect the ids of the
holds. Results print as a table with the ratios the HTTP-speed targets are stated in.

Over 350 lines on purpose: the command, the echo ceiling and the report describe one
measurement; each part is small and only meaningful next to the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockguard import domain, strategies
from stockguard.bench.runner import fresh_database
from stockguard.stores.sql.audit import audit
from stockguard.stores.sql.store import SqlStore

ADMIN_TOKEN = secrets.token_urlsafe(24)
"""Made per run: the served instance only lives for the benchmark."""
HOT_SKU = "HOT"
SOLD_SKU = "SOLD"
START_S_MAX = 60.0
STOP_S_MAX = 60.0
console = Console(stderr=True)
WRK_SLACK_S = 30.0
"""wrk gets its duration plus this before it is killed."""

_COMMON_LUA = """
local counts = {}
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function count(status)
  counts[status] = (counts[status] or 0) + 1
  _G["c" .. status] = counts[status]
end
function done(summary, latency, requests)
  local statuses = {}
  for _, t in ipairs(threads) do
    for _, s in ipairs({200, 201, 404, 409, 410, 422, 429, 500, 503}) do
      local n = t:get("c" .. s)
      if n then statuses[tostring(s)] = (statuses[tostring(s)] or 0) + n end
    end
  end
  local parts = {}
  for s, n in pairs(statuses) do table.insert(parts, string.format('"%s":%d', s, n)) end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"statuses":{%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, table.concat(parts, ",")))
end
"""

GET_LUA = (
    _COMMON_LUA
    + """
function init(args) path = args[1] end
function request() return wrk.format("GET", path) end
function response(status, headers, body) count(status) end
"""
)

RESERVE_LUA = (
    _COMMON_LUA
    + """
local n = 0
function init(args)
  path = args[1]; sku = args[2]; prefix = args[3] .. "-" .. tid .. "-"
  if args[4] and args[4] ~= "" then
    ids = io.open(args[4] .. "." .. tid, "w"); ids:setvbuf("line")
  end
end
function request()
  n = n + 1
  local body = '{"order_id":"' .. prefix .. n .. '","items":[{"sku":"' .. sku ..
    '","quantity":1}]}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  count(status)
  if status == 201 and ids then
    local id = string.match(body, '"id":"([^"]+)"')
    if id then ids:write(id, "\\n") end
  end
end
"""
)

TRANSITION_LUA = (
    _COMMON_LUA
    + """
local list = {}
local i = 0
reused = 0
function init(args)
  action = args[1]
  local total = tonumber(args[3]); local mine = tid
  local k = 0
  for line in io.lines(args[2]) do
    k = k + 1
    if (k % total) == (mine - 1) then table.insert(list, line) end
  end
end
function request()
  i = i + 1
  if i > #list then reused = reused + 1 end
  local id = list[((i - 1) % math.max(#list, 1)) + 1] or "none"
  return wrk.format("POST", "/v1/reservations/" .. id .. "/" .. action)
end
function response(status, headers, body) count(status) end
"""
)


@dataclass(frozen=True)
class Load:
    connections: int = 1_000
    threads: int = 2
    duration_s: int = 10


@dataclass
class Measured:
    """One wrk run."""

    target: str
    scenario: str
    workers: int
    requests: int
    rate_per_s: float
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_max: float
    statuses: dict[str, int]
    socket_errors: int
    timeouts: int
    note: str = ""

    def row(self) -> list[str]:
        statuses = " ".join(f"{k}×{v}" for k, v in sorted(self.statuses.items()))
        return [
            self.target,
            self.scenario,
            str(self.workers),
            f"{self.rate_per_s:,.0f}",
            f"{self.latency_ms_p50:.0f}",
            f"{self.latency_ms_p99:.0f}",
            f"{self.latency_ms_max:.0f}",
            statuses,
            f"{self.socket_errors} / {self.timeouts}",
            self.note,
        ]


COLUMNS = [
    "server",
    "scenario",
    "workers",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "statuses",
    "socket errors / timeouts",
    "note",
]


@dataclass
class Audit:
    workers: int
    violations: list[str]
    sold_out: tuple[int, int]
    """(on_hand, reserved) of the sold-out SKU: exactly (1, 1) when nothing was oversold."""


@dataclass
class Report:
    measured: list[Measured] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)

    def find(self, target: str, scenario: str, workers: int) -> Measured | None:
        for found in self.measured:
            if (found.target, found.scenario, found.workers) == (target, scenario, workers):
                return found
        return None


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    return found


def run_wrk(
    url: str, script: Path, args: list[str], load: Load, *, target: str, scenario: str, workers: int
) -> Measured:
    command = [
        require_wrk(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        *args,
    ]
    done = subprocess.run(  # noqa: S603 - our own arguments, no shell
        command, capture_output=True, text=True, timeout=load.duration_s + WRK_SLACK_S, check=True
    )
    line = next(
        (x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")),
        None,
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    duration_s = data["duration_us"] / 1e6
    return Measured(
        target=target,
        scenario=scenario,
        workers=workers,
        requests=data["requests"],
        rate_per_s=data["requests"] / duration_s,
        latency_ms_p50=data["p50_us"] / 1000,
        latency_ms_p99=data["p99_us"] / 1000,
        latency_ms_max=data["max_us"] / 1000,
        statuses=dict(data["statuses"]),
        socket_errors=data["connect_errors"] + data["read_errors"] + data["write_errors"],
        timeouts=data["timeouts"],
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + START_S_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early with code {process.returncode}")
        try:
            if httpx.get(url + path, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {START_S_MAX} s")


@contextmanager
def _running(command: list[str], env: dict[str, str], health_path: str, port: int) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(url, process, health_path)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_S_MAX)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_S_MAX)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKGUARD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def echo_server(workers: int) -> AbstractContextManager[str]:
    port = _free_port()
    command = [sys.executable, "-m", "stockguard.bench.echo", str(port), str(workers)]
    return _running(command, _clean_env(), "/", port)


def stockguard_server(
    db_url: str, strategy: str, workers: int, redis_url: str | None, traces: str = "off"
) -> AbstractContextManager[str]:
    port = _free_port()
    env = _clean_env()
    env["STOCKGUARD_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["STOCKGUARD_TRACES"] = traces  # OTEL_* variables pass through (exporter, sampler)
    if redis_url is not None:
        env["STOCKGUARD_REDIS_URL"] = redis_url
    command = [
        sys.executable,
        "-m",
        "stockguard.cli",
        "serve",
        "--db",
        db_url,
        "--strategy",
        strategy,
        "--workers",
        str(workers),
        "--port",
        str(port),
    ]
    return _running(command, env, "/healthz", port)


def _prepare_stock(url: str) -> None:
    """HOT has stock for every request of the run; SOLD had one unit, and sold it."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        for sku, on_hand in ((HOT_SKU, domain.ON_HAND_MAX), (SOLD_SKU, 1)):
            answer = client.put(f"/v1/stock/{sku}", json={"on_hand": on_hand}, headers=admin)
            answer.raise_for_status()
        first = client.post(
            "/v1/reservations",
            json={"order_id": "bench-sold-first", "items": [{"sku": SOLD_SKU, "quantity": 1}]},
        )
        first.raise_for_status()
        for n in range(3):  # a refusal or two: the sold-out mark is set
            client.post(
                "/v1/reservations",
                json={"order_id": f"bench-sold-{n}", "items": [{"sku": SOLD_SKU, "quantity": 1}]},
            )


async def _audit(db_url: str, workers: int) -> Audit:
    store = SqlStore.open(db_url, pool_size=1)
    try:
        found = await audit(store)
        async with store.transaction(read_only=True) as tx:
            levels = await tx.levels([SOLD_SKU])
    finally:
        await store.close()
    sold = levels[SOLD_SKU]
    return Audit(workers, [str(v) for v in found.violations], (sold.on_hand, sold.reserved))


def _merge_ids(prefix: Path, threads: int, into: Path) -> int:
    lines: list[str] = []
    for tid in range(1, threads + 1):
        part = Path(f"{prefix}.{tid}")
        if part.exists():
            lines += [x for x in part.read_text().splitlines() if x]
            part.unlink()
    into.write_text("\n".join(lines) + "\n")
    return len(lines)


async def run(
    db_url: str,
    strategy: str,
    workers_list: list[int],
    load: Load,
    redis_url: str | None,
    say: object = print,
    traces: str = "off",
) -> Report:
    """Every scenario for every worker count; ``say`` gets one line per finished run."""
    report = Report()
    announce = say if callable(say) else print
    with tempfile.TemporaryDirectory(prefix="stockguard-bench-http-") as scratch:
        workdir = Path(scratch)
        scripts = {}
        for name, text in (("get", GET_LUA), ("reserve", RESERVE_LUA), ("t", TRANSITION_LUA)):
            scripts[name] = workdir / f"{name}.lua"
            scripts[name].write_text(text)

        def measure(url: str, script: str, args: list[str], **labels: object) -> Measured:
            found = run_wrk(url, scripts[script], args, load, **labels)  # type: ignore[arg-type]
            report.measured.append(found)
            announce(found)
            return found

        for workers in workers_list:
            with echo_server(workers) as url:
                measure(url, "get", ["/"], target="echo", scenario="GET", workers=workers)
                measure(
                    url,
                    "reserve",
                    ["/", "SKU", "e", ""],
                    target="echo",
                    scenario="POST",
                    workers=workers,
                )
            async with fresh_database(db_url, workdir) as fresh:
                with stockguard_server(fresh, strategy, workers, redis_url, traces) as url:
                    _prepare_stock(url)
                    ids_prefix = workdir / "ids"
                    measure(
                        url,
                        "get",
                        ["/healthz"],
                        target="stockguard",
                        scenario="healthz",
                        workers=workers,
                    )
                    held = measure(
                        url,
                        "reserve",
                        ["/v1/reservations", HOT_SKU, f"w{workers}", str(ids_prefix)],
                        target="stockguard",
                        scenario="reserve",
                        workers=workers,
                    )
                    ids = workdir / "ids.txt"
                    count = _merge_ids(ids_prefix, load.threads, ids)
                    held.note = f"{count:,} holds made"
                    measure(
                        url,
                        "reserve",
                        ["/v1/reservations", SOLD_SKU, f"s{workers}", ""],
                        target="stockguard",
                        scenario="sold-out",
                        workers=workers,
                    )
                    lines = ids.read_text().splitlines()
                    half = len(lines) // 2
                    confirm_ids, release_ids = workdir / "confirm.txt", workdir / "release.txt"
                    confirm_ids.write_text("\n".join(lines[:half]) + "\n")
                    release_ids.write_text("\n".join(lines[half:]) + "\n")
                    for action, source in (("confirm", confirm_ids), ("release", release_ids)):
                        found = measure(
                            url,
                            "t",
                            [action, str(source), str(load.threads)],
                            target="stockguard",
                            scenario=action,
                            workers=workers,
                        )
                        available = len(source.read_text().splitlines())
                        if found.requests > available:
                            found.note = (
                                f"{available:,} holds for {found.requests:,} requests: "
                                f"{found.requests - available:,} were replays"
                            )
                report.audits.append(await _audit(fresh, workers))
    return report


def ratios(report: Report, workers_list: list[int]) -> list[tuple[str, str, str]]:
    """(measure, value, target) rows of the HTTP-speed targets."""
    rows: list[tuple[str, str, str]] = []

    def rate(target: str, scenario: str, workers: int) -> float | None:
        found = report.find(target, scenario, workers)
        return None if found is None else found.rate_per_s

    one = workers_list[0]
    reserve = report.find("stockguard", "reserve", one)
    echo_post = rate("echo", "POST", one)
    echo_get = rate("echo", "GET", one)
    if reserve is not None:
        rows.append((f"reserve, {one} worker", f"{reserve.rate_per_s:,.0f}/s", "≥ 10,000/s"))
        if echo_post:
            share = reserve.rate_per_s / echo_post
            rows.append(("reserve / bare echo POST", f"{share:.0%}", "≥ 40 %"))
        rows.append(("reserve p99", f"{reserve.latency_ms_p99:.0f} ms", "≤ 150 ms"))
    sold = rate("stockguard", "sold-out", one)
    if sold is not None:
        rows.append((f"sold-out refusals, {one} worker", f"{sold:,.0f}/s", "≥ 15,000/s"))
    health = rate("stockguard", "healthz", one)
    if health is not None and echo_get:
        rows.append(("/healthz / bare echo GET", f"{health / echo_get:.0%}", "≥ 60 %"))
    for action in ("confirm", "release"):
        found = rate("stockguard", action, one)
        if found is not None:
            rows.append((f"{action}, {one} worker", f"{found:,.0f}/s", "≥ 5,000/s"))
    for workers in workers_list[1:]:
        more = rate("stockguard", "reserve", workers)
        if more is not None and reserve is not None:
            rows.append(
                (
                    f"reserve, {workers} workers / {one}",
                    f"{more / reserve.rate_per_s:.2f}×",
                    "≥ 1.6×",
                )
            )
    for found_audit in report.audits:
        clean = not found_audit.violations and found_audit.sold_out == (1, 1)
        rows.append(
            (
                f"correctness, {found_audit.workers} worker(s)",
                f"audit clean, sold-out SKU (on_hand, reserved) = {found_audit.sold_out}"
                if clean
                else f"VIOLATIONS {found_audit.violations} sold-out {found_audit.sold_out}",
                "0 oversold, audit clean",
            )
        )
    return rows


def markdown(report: Report, workers_list: list[int], command: str) -> str:
    lines = [f"Command: `{command}`", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "|".join(" --- " for _ in COLUMNS) + "|")
    for found in report.measured:
        lines.append("| " + " | ".join(found.row()) + " |")
    lines += ["", "| measure | result | target |", "| --- | ---: | --- |"]
    for measure, value, target in ratios(report, workers_list):
        lines.append(f"| {measure} | {value} | {target} |")
    return "\n".join(lines) + "\n"


def run_sync(
    db_url: str,
    strategy: str,
    workers_list: list[int],
    load: Load,
    redis_url: str | None,
    say: object,
    traces: str = "off",
) -> Report:
    return asyncio.run(run(db_url, strategy, workers_list, load, redis_url, say, traces))


def command(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="Database the served runs use; each worker count gets a fresh database "
            "created beside it and dropped afterwards. Default: embedded SQLite.",
        ),
    ] = "sqlite:///bench-http.db",
    strategy: Annotated[
        str, typer.Option(help=f"Strategy of the served runs ({', '.join(strategies.names())}).")
    ] = strategies.DEFAULT_STRATEGY,
    workers: Annotated[
        list[int] | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes; repeat to compare (the first is the baseline of the "
            "ratios). Default: 1 and 2.",
        ),
    ] = None,
    connections: Annotated[
        int, typer.Option(min=1, max=10_000, help="wrk's keep-alive connections (buyers).")
    ] = 1_000,
    threads: Annotated[int, typer.Option(min=1, max=64, help="wrk's threads.")] = 2,
    duration_s: Annotated[
        int, typer.Option(min=1, max=600, help="Seconds each wrk run lasts.")
    ] = 10,
    redis: Annotated[
        str | None,
        typer.Option(help="Redis URL, for the redis and queue strategies."),
    ] = None,
    markdown_path: Annotated[
        Path | None,
        typer.Option(
            "--markdown", help="Also write the tables, as Markdown, to this file (replaced)."
        ),
    ] = None,
    traces: Annotated[
        str,
        typer.Option(
            help="The served runs' traces: off, otlp (to OTEL_EXPORTER_OTLP_ENDPOINT) or "
            "console; what tracing costs (docs/benchmarks.md, issue 17)."
        ),
    ] = "off",
) -> None:
    """Measure the HTTP path from outside: a bare ASGI echo on the same server as the
    ceiling, then `stockguard serve` (healthz, reserve, sold-out, confirm, release), then
    the audit. Needs `wrk` (Debian package). Load goes to 127.0.0.1 only."""
    workers_list = workers or [1, 2]
    try:
        require_wrk()
    except RuntimeError as missing:
        console.print(f"[red]{missing}[/red]")
        raise typer.Exit(2) from None
    load = Load(connections=connections, threads=threads, duration_s=duration_s)
    steps = len(workers_list) * 7
    table = Table(*COLUMNS, title="HTTP path")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("wrk runs", total=steps)

        def say(found: Measured) -> None:
            progress.advance(task)
            progress.console.print(
                f"{found.target} {found.scenario} ×{found.workers}: "
                f"{found.rate_per_s:,.0f}/s p99 {found.latency_ms_p99:.0f} ms"
            )

        report = run_sync(db, strategy, workers_list, load, redis, say, traces)
    for found in report.measured:
        table.add_row(*found.row())
    targets = Table("measure", "result", "target", title="Against the targets")
    for row in ratios(report, workers_list):
        targets.add_row(*row)
    out = Console(width=200)
    out.print(table)
    out.print(targets)
    if markdown_path is not None:
        markdown_path.write_text(markdown(report, workers_list, shlex.join(sys.argv)))
    if any(a.violations or a.sold_out != (1, 1) for a in report.audits):
        raise typer.Exit(1)
