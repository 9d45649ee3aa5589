"""``stockguard loadtest [URL]``: one command from set-up to audit (docs/loadtest.md).

Long (~380 lines) because it is only options: every scenario's knobs with the help
text ``--help`` shows. The work is in ``plan``, ``run``, ``audit`` and ``summary``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections import Counter
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from stockguard import strategies
from stockguard.bench import http as bench_http
from stockguard.bench.report import plotting_missing
from stockguard.loadtest import audit, report, run, summary
from stockguard.loadtest.plan import (
    RESERVE,
    SCENARIOS,
    Mix,
    Plan,
    Threshold,
    parse_duration,
    parse_stage,
    parse_threshold,
)
from stockguard.loadtest.worker import Job

console = Console(stderr=True)

DEFAULT_STAGES = ("30s:700", "30s:1000")
ALLOWED = {
    "drop": frozenset({201, 409}),
    "peak": frozenset({201, 409}),
    "flash": frozenset({201, 409}),
    "shop": frozenset({200, 201, 409}),
}
"""Statuses each scenario may see (docs/design.md#reservations): a new hold or out of stock;
``shop`` also reads stock and confirms or releases (200)."""
DEFAULT_UNITS = {"drop": 100, "peak": 100, "flash": 1_000, "shop": 50}
DEFAULT_VUS = {"drop": 500, "shop": 200}
SHOP_TTL_S = 10


class Failed(Exception):
    """Set-up or load could not run: exit 2 with the sentence."""


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise Failed(f"{url!r}: give an http:// URL (https is not supported)")
    port = parts.port or 80
    return parts.hostname, port, f"http://{parts.hostname}:{port}"


def _jobs(
    plan: Plan,
    processes: int,
    host: str,
    port: int,
    skus: list[str],
    run_id: str,
    engine: str,
    token: str | None,
    bare: bool,
) -> list[Job]:
    limit = plan.buyers if plan.scenario == "flash" else max(1, plan.vus_max)
    count = max(1, min(processes, limit))
    return [
        Job(index, count, host, port, plan, run_id, tuple(skus), engine, token, bare, seed=index)
        for index in range(count)
    ]


def _drive_service(
    base_url: str,
    plan: Plan,
    *,
    processes: int,
    engine: str,
    units: int,
    sku_count: int,
    admin_token: str | None,
    api_token: str | None,
    thresholds: list[Threshold],
) -> tuple[run.Recorded, list[audit.Check], dict[str, float]]:
    host, port, base_url = _target(base_url)
    run_id = "lt" + secrets.token_hex(4)
    if plan.scenario == "shop":
        skus = [f"LT-{run_id}-{n:04d}" for n in range(sku_count)]
    else:
        skus = [f"LT-{run_id}"]

    async def before() -> tuple[dict[str, audit.Level], str | None]:
        async with audit.Admin(base_url, admin_token, api_token) as admin:
            await admin.set_stock(skus, units)
            return await admin.levels(skus), await admin.metrics()

    levels, metrics_before = asyncio.run(before())
    jobs = _jobs(plan, processes, host, port, skus, run_id, engine, api_token, bare=False)
    recorded = run.drive(jobs, plan, console, plan.scenario)
    ended = time.monotonic()

    async def after() -> tuple[list[audit.Check], str | None]:
        async with audit.Admin(base_url, admin_token, api_token) as admin:
            metrics_after = await admin.metrics()
            statuses = Counter(int(s) for s in recorded.status.tolist())
            checks = await audit.audit(
                admin,
                host=host,
                port=port,
                scenario=plan.scenario,
                skus=skus,
                before=levels,
                granted=recorded.granted,
                reserve_requests=int((recorded.kind == RESERVE).sum()),
                statuses=statuses,
                allowed=ALLOWED[plan.scenario],
                ttl_s=plan.ttl_s,
                ended_at=ended,
            )
            return checks, metrics_after

    console.print(f"[dim]auditing {len(recorded.granted):,} hold(s) through the API…[/dim]")
    checks, metrics_after = asyncio.run(after())
    return recorded, checks, summary.metric_deltas(metrics_before, metrics_after)


def command(
    url: Annotated[
        str | None,
        typer.Argument(
            help="The running service, e.g. http://127.0.0.1:8000. Without it, a `serve` is "
            "started on --db for the run and stopped afterwards."
        ),
    ] = None,
    scenario: Annotated[
        str, typer.Option(help=f"One of {', '.join(SCENARIOS)} (docs/loadtest.md).")
    ] = "drop",
    vus: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100_000,
            help="Virtual users (drop 500, shop 200); with --rate, the most in flight.",
        ),
    ] = None,
    duration: Annotated[str, typer.Option(help="How long drop and shop run (30s, 1m…).")] = "60s",
    stage: Annotated[
        list[str] | None,
        typer.Option(help="peak: DURATION:VUS, repeated (default 30s:700 then 30s:1000)."),
    ] = None,
    units: Annotated[
        int | None,
        typer.Option(min=0, help="Stock per SKU (drop and peak 100, flash 1,000, shop 50)."),
    ] = None,
    buyers: Annotated[int, typer.Option(min=1, help="flash: buyers, each buying once.")] = 10_000,
    in_flight: Annotated[int, typer.Option(min=1, help="flash: most buyers in flight.")] = 1_000,
    skus: Annotated[int, typer.Option(min=1, max=10_000, help="shop: SKUs, Zipf-skewed.")] = 200,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Open model: iterations (or flash buyers) started per "
            "second, whatever the answers' speed.",
        ),
    ] = None,
    think: Annotated[
        str, typer.Option(help="Think time between a user's steps (± 50 % at random).")
    ] = "0s",
    ttl: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=86_400,
            help="ttl_seconds of each hold (shop 10, so walked-away "
            "holds expire during the test; others the service's default).",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="k6-style, repeated: 'p95<500ms', 'max<2s', 'rate>1000', "
            "'failed<1%', 'status in 201,409'."
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="STOCKGUARD_ADMIN_TOKEN", help="For set-up and audit of a URL."),
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option(envvar="STOCKGUARD_API_TOKEN", help="Sent on the load's requests."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database of the started serve (default: a fresh embedded "
            "SQLite file, deleted afterwards).",
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help=f"Strategy of the started serve ({', '.join(strategies.names())}).")
    ] = strategies.DEFAULT_STRATEGY,
    serve_workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes of the started serve and echo.")
    ] = 1,
    redis: Annotated[
        str | None, typer.Option(help="Redis URL of the started serve (redis, queue).")
    ] = None,
    processes: Annotated[
        int | None, typer.Option(min=1, max=256, help="Load processes (default: one per core).")
    ] = None,
    client: Annotated[
        str, typer.Option(help="HTTP engine: raw (asyncio, fastest) or httpx.")
    ] = "raw",
    timeout: Annotated[str, typer.Option(help="Per-request timeout.")] = "60s",
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Also run the same scenario against a bare ASGI echo "
            "on this machine: the client's own ceiling.",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML report with plots here.")
    ] = None,
) -> None:
    """Load-test a stockguard service over HTTP, audit it, report (docs/loadtest.md).

    Exit 0 when every correctness check and threshold passed, 1 when one failed, 2 when
    the run could not be made.
    """
    try:
        plan, thresholds, unit_count = _plan(
            scenario,
            vus,
            duration,
            stage,
            units,
            buyers,
            in_flight,
            rate,
            think,
            ttl,
            threshold,
            timeout,
        )
        if client not in ("raw", "httpx"):
            raise Failed(f"--client {client!r}: raw or httpx")
    except (ValueError, Failed) as bad:
        console.print(f"[red]{bad}[/red]")
        raise typer.Exit(2) from None
    if report_dir is not None and (missing := plotting_missing("loadtest --report")):
        typer.echo(missing, err=True)  # before the load, not after it
        raise typer.Exit(4)
    cores = os.cpu_count() or 1
    procs = processes or cores
    served: str | None = None
    try:
        with ExitStack() as stack:
            if url is None:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="stockguard-lt-"))
                database = db or f"sqlite:///{Path(scratch) / 'loadtest.db'}"
                console.print(f"[dim]starting serve on {database} ({strategy})…[/dim]")
                server: AbstractContextManager[str] = bench_http.stockguard_server(
                    database, strategy, serve_workers, redis
                )
                target = stack.enter_context(server)
                served = (
                    f"serve started for the run: {database}, {strategy}, {serve_workers} worker(s)"
                )
                admin: str | None = bench_http.ADMIN_TOKEN
                api: str | None = None
            else:
                target, admin, api = url, admin_token, api_token
            recorded, checks, metrics = _drive_service(
                target,
                plan,
                processes=procs,
                engine=client,
                units=unit_count,
                sku_count=skus,
                admin_token=admin,
                api_token=api,
                thresholds=thresholds,
            )
        calibrated: run.Recorded | None = None
        if calibrate:
            console.print(f"[dim]calibrating: the same {scenario} against a bare echo…[/dim]")
            with bench_http.echo_server(serve_workers) as echo:
                host, port, _ = _target(echo)
                names = [f"ECHO-{n}" for n in range(skus if scenario == "shop" else 1)]
                jobs = _jobs(plan, procs, host, port, names, "echo", client, None, bare=True)
                calibrated = run.drive(jobs, plan, console, f"{scenario} (echo)")
    except (run.LoadFailed, audit.SetupFailed, RuntimeError, Failed, OSError) as failed:
        console.print(f"[red]loadtest could not run:[/red] {failed}")
        raise typer.Exit(2) from None

    measured = summary.measure(recorded, thresholds)
    calibrate_figures = summary.measure(calibrated, []) if calibrated is not None else None
    stats = measured.stats(ALLOWED[scenario])
    evaluated = [(t, *t.evaluate(stats)) for t in thresholds]
    outcome = summary.Outcome(
        scenario=scenario,
        target=target,
        served=served,
        plan=plan,
        measured=measured,
        checks=checks,
        thresholds=evaluated,
        calibrate=calibrate_figures,
        metrics=metrics,
        notes=summary.client_notes(measured, calibrate_figures, cores),
    )
    shown = summary.text(outcome)
    if json_out:
        console.print(shown, markup=False, highlight=False)
        typer.echo(json.dumps(outcome.to_json(), indent=2))
    else:
        typer.echo(shown)
    if report_dir is not None:
        page = report.write(report_dir, outcome, recorded, calibrated)
        console.print(f"report: {page}")
    if not outcome.passed:
        raise typer.Exit(1)


def _plan(
    scenario: str,
    vus: int | None,
    duration: str,
    stages: list[str] | None,
    units: int | None,
    buyers: int,
    in_flight: int,
    rate: float | None,
    think: str,
    ttl: int | None,
    thresholds: list[str] | None,
    timeout: str,
) -> tuple[Plan, list[Threshold], int]:
    if scenario not in SCENARIOS:
        raise ValueError(f"--scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if scenario == "peak" and rate:
        raise ValueError("peak ramps virtual users (--stage); --rate is for drop, shop, flash")
    parsed = tuple(parse_stage(s) for s in (stages or DEFAULT_STAGES))
    plan = Plan(
        scenario=scenario,
        vus=vus or DEFAULT_VUS.get(scenario, 500),
        duration_s=parse_duration(duration),
        stages=parsed if scenario == "peak" else (),
        buyers=buyers if scenario == "flash" else 0,
        in_flight=in_flight if scenario == "flash" else 0,
        rate=rate,
        think_s=parse_duration(think),
        ttl_s=ttl if ttl is not None else (SHOP_TTL_S if scenario == "shop" else None),
        timeout_s=parse_duration(timeout),
        mix=Mix(),
    )
    if plan.timeout_s <= 0:
        raise ValueError("--timeout must be above 0")
    if scenario == "peak" and not plan.vus_max:
        raise ValueError("peak needs a stage with more than 0 VUs")
    plan = replace(plan)
    return (
        plan,
        [parse_threshold(t) for t in thresholds or []],
        (units if units is not None else DEFAULT_UNITS[scenario]),
    )
