"""``stockguard bench``: options, progress, and what is printed (registered in cli.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from stockguard import domain, strategies
from stockguard.bench import report
from stockguard.bench.runner import (
    Plan,
    RunResult,
    backend_name,
    default_strategies,
    run_plan,
)
from stockguard.bench.workloads import DEFAULT_WORKLOADS, WORKLOADS, WorkloadSpec
from stockguard.domain.events import parse_event_types
from stockguard.domain.locations import LOCATIONS_MAX
from stockguard.stores.sql.backend import backend_for

console = Console(stderr=True)
"""Tables and progress, on stderr (stdout is for --json). Its width is the terminal's, or
COLUMNS when set; piped without COLUMNS, 100 (the tables are made to fit in it)."""
PROGRESS_EVERY_S = 0.1
PLAIN_PROGRESS_EVERY_S = 10.0
"""Piped (stderr not a terminal), progress is plain lines: one per run started and
finished, and one every this many seconds during a long run."""
PIPED_WIDTH = 100


def bench(
    db: Annotated[
        list[str] | None,
        typer.Option(
            "--db",
            help="Database URL to benchmark; repeat for several (sqlite:///…, postgresql://…, "
            "mysql://…). Each run gets a fresh database created beside the one named and "
            "dropped afterwards. Default: an embedded SQLite file in a temporary directory.",
        ),
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            help=f"Strategy to run; repeat for several ({', '.join(strategies.names())}). "
            "Default: every strategy the given services support (Redis ones need --redis).",
        ),
    ] = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            "--workload",
            help="flash (one hot SKU), mixed (Zipf-skewed SKUs, multi-line orders, "
            "confirms/releases/expiries) or drop (200 bots x 50 orders against a cap of 2 "
            "per customer); repeat for several. Default: flash and mixed.",
        ),
    ] = None,
    admission: Annotated[
        str,
        typer.Option(
            help="Admission control in front of the strategy: off (the strategy alone), on "
            "(caps and sold-out fast path, rows named STRATEGY+admission), or both.",
        ),
    ] = "both",
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            help="Event types written to the outbox with each change, as the [events] types "
            "setting (all, none, stock, or a comma-separated list); repeat to compare, e.g. "
            "--events all --events none (rows named STRATEGY+events:TYPES). Default: all.",
        ),
    ] = None,
    locations: Annotated[
        list[int] | None,
        typer.Option(
            "--locations",
            min=1,
            max=LOCATIONS_MAX,
            help="Locations each SKU's units are split over, evenly (docs/locations.md): 1 is "
            "the default location alone; N adds N-1 locations in priority order. Repeat to "
            "compare, e.g. --locations 1 --locations 3 (rows named STRATEGY+locations:N). "
            "Default: 1. The sharded strategy keeps stock at one location: runs with more "
            "are skipped for it.",
        ),
    ] = None,
    requests: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="flash: reservation requests per run.")
    ] = 10_000,
    mixed_requests: Annotated[
        int,
        typer.Option(
            min=1,
            max=1_000_000,
            help="mixed: reservation requests per run (each then confirms, releases or "
            "expires, so a mixed run does about twice the writes).",
        ),
    ] = 2_000,
    concurrency: Annotated[
        int, typer.Option(min=1, max=10_000, help="Requests in flight at any time.")
    ] = 1_000,
    units: Annotated[
        int,
        typer.Option(min=0, max=10**9, help="flash: units of the hot SKU; mixed: per SKU."),
    ] = 1_000,
    skus: Annotated[int, typer.Option(min=1, max=10_000, help="mixed: number of SKUs.")] = 100,
    seed: Annotated[int, typer.Option(help="mixed: random seed for orders and outcomes.")] = 2024,
    pool_size: Annotated[
        int | None,
        typer.Option(min=1, max=200, help="Database connections per run (default: backend's)."),
    ] = None,
    redis: Annotated[
        str | None, typer.Option("--redis", help="Redis URL; adds the Redis strategies.")
    ] = None,
    gc_freeze: Annotated[
        bool,
        typer.Option(
            help="Set the garbage collector before each run as `serve` does after start-up "
            "(freeze the start-up heap, gen-0 threshold 20,000: stockguard/heap.py), so that "
            "full collections do not land in some runs only. --no-gc-freeze: CPython defaults.",
        ),
    ] = True,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per run on stdout (tables: stderr)."),
    ] = False,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write index.html, PNG plots, results.json and results.md to this directory.",
        ),
    ] = None,
    markdown_file: Annotated[
        Path | None,
        typer.Option(
            "--markdown",
            help="Write the result tables as Markdown into this file, between the markers "
            f"{report.MARK_BEGIN} and {report.MARK_END} when it has them.",
        ),
    ] = None,
) -> None:
    """Run the same workloads against every strategy and database, in-process, and audit.

    After every run the tables are audited (invariants I1-I4) and oversold units counted;
    the exit status is 1 if any run oversold or broke an invariant.
    """
    if report_dir is not None and (missing := report.plotting_missing("bench --report")):
        typer.echo(missing, err=True)
        raise typer.Exit(report.EXIT_MISSING_PACKAGE)
    workloads = workload or list(DEFAULT_WORKLOADS)
    for name in workloads:
        if name not in WORKLOADS:
            raise typer.BadParameter(f"unknown workload {name!r}", param_hint="--workload")
    chosen = strategy or default_strategies(redis)
    for name in chosen:
        try:
            needs = strategies.strategy_class(name).requires
        except ValueError as unknown:
            raise typer.BadParameter(str(unknown), param_hint="--strategy") from None
        if "redis" in needs and redis is None:
            raise typer.BadParameter(f"{name} needs --redis URL", param_hint="--strategy")
    modes = {"off": [False], "on": [True], "both": [False, True]}.get(admission)
    if modes is None:
        raise typer.BadParameter("choose off, on or both", param_hint="--admission")
    urls = db or ["sqlite:///bench.db"]  # the file name is replaced: runs use fresh files
    for url in urls:
        try:
            backend_name(url)
        except ValueError as unsupported:
            raise typer.BadParameter(str(unsupported), param_hint="--db") from None
    # asyncmy warns once per migration about a constraint name MariaDB ignores: noise here.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    spec = WorkloadSpec(requests, concurrency, units, skus, seed, mixed_requests)
    for types in events or ["all"]:
        try:
            parse_event_types(types)
        except domain.InvalidInput as bad:
            raise typer.BadParameter(bad.reason, param_hint="--events") from None
    plan = Plan(
        urls,
        chosen,
        workloads,
        modes,
        spec,
        redis,
        pool_size,
        gc_freeze,
        events or ["all"],
        sorted(set(locations or [1])),
    )
    given = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    command = " ".join(["stockguard bench", *(shlex.quote(arg) for arg in given)])
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    results = asyncio.run(_run_with_progress(plan, json_output))

    console.print(report.results_table(results))
    if report_dir is not None:
        facts = report.machine() | asyncio.run(_database_versions(urls))
        page = report.write_report(report_dir, results, command, facts)
        console.print(f"report: {page}")
    if markdown_file is not None:
        report.update_markdown(markdown_file, results, command)
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.print(
            f"[bold red]{r.backend} {r.strategy} {r.workload}: oversold {r.oversold}[/bold red]"
        )
        for violation in r.violations:
            console.print(f"  {violation}")
    if failed:
        raise typer.Exit(1)


async def _database_versions(urls: list[str]) -> dict[str, str]:
    """Each server's own version string, for the report's header; SQLite's is in
    :func:`report.machine` already. A server that does not answer is left out."""
    versions: dict[str, str] = {}
    for url in dict.fromkeys(urls):
        backend = backend_for(url)
        if backend.name == "sqlite":
            continue
        engine = create_async_engine(backend.url, pool_size=1)
        try:
            async with asyncio.timeout(5), engine.connect() as connection:
                version = (await connection.execute(text("SELECT version()"))).scalar_one()
            versions[backend.name] = str(version).split(" on ")[0]  # PostgreSQL: no compiler
        except Exception as error:  # a header line, never a reason to fail the bench
            versions[backend.name] = f"unknown ({type(error).__name__})"
        finally:
            await engine.dispose()
    return versions


async def _run_with_progress(plan: Plan, json_output: bool) -> list[RunResult]:
    if not console.is_terminal:
        return await _run_with_plain_progress(plan, json_output)
    done = [0]
    runs = plan.runs()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        overall = progress.add_task("runs", total=len(runs))
        current = progress.add_task("", total=plan.spec.requests)
        labels = iter(runs)

        def describe() -> None:
            step = next(labels, None)
            if step is not None:
                url, workload, strategy, admission, events, places = step
                name = plan.label(strategy, admission, events, places)
                progress.update(
                    current,
                    description=f"{workload} {name} on {backend_name(url)}",
                    completed=0,
                    total=plan.spec.requests_of(workload),
                )

        def finished(result: RunResult) -> None:
            if json_output:
                typer.echo(report.json_lines([result]))
            progress.advance(overall)
            describe()

        async def tick() -> None:
            # A ticker, not a callback per request: progress must not slow the workload.
            while True:
                progress.update(current, completed=done[0])
                await asyncio.sleep(PROGRESS_EVERY_S)

        describe()
        ticker = asyncio.create_task(tick())
        try:
            return await run_plan(plan, done, finished)
        finally:
            ticker.cancel()


async def _run_with_plain_progress(plan: Plan, json_output: bool) -> list[RunResult]:
    """Progress as plain lines on stderr, for logs and pipes (no cursor movement)."""
    done = [0]
    runs = plan.runs()
    steps = iter(enumerate(runs, 1))
    current = [""]
    started = [time.monotonic()]

    def say(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    def begin() -> None:
        step = next(steps, None)
        if step is not None:
            n, (url, workload, strategy, admission, events, places) = step
            name = plan.label(strategy, admission, events, places)
            current[0] = f"{n}/{len(runs)} {workload} {name} on {backend_name(url)}"
            started[0] = time.monotonic()
            say(f"{current[0]}: {plan.spec.requests_of(workload):,} requests")

    def finished(result: RunResult) -> None:
        if json_output:
            typer.echo(report.json_lines([result]))
        verdict = "ok" if result.ok else f"FAILED (oversold {result.oversold})"
        say(
            f"{current[0]}: done in {time.monotonic() - started[0]:.1f} s, "
            f"{result.throughput_per_s:,.0f} req/s, {verdict}"
        )
        begin()

    async def tick() -> None:
        while True:
            await asyncio.sleep(PLAIN_PROGRESS_EVERY_S)
            say(f"{current[0]}: {done[0]:,} answered")

    begin()
    ticker = asyncio.create_task(tick())
    try:
        return await run_plan(plan, done, finished)
    finally:
        ticker.cancel()
