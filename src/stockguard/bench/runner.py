"""Runs every (database, strategy, admission, workload) combination on fresh tables.

Each run gets a database of its own that nothing else touches: a new SQLite file in a
temporary directory, or on a server a new ``stockguard_bench_<database>_<random>`` database created
next to the one in the URL and dropped right after the run (also when the run fails), so
a benchmark leaves nothing behind and never reads another run's rows or bloat. After the
workload the tables are audited (I1-I4, ``stores/sql/audit.py``): oversold units and
broken invariants are part of every result.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from stockguard import heap, strategies
from stockguard.admission import AdmissionLimits
from stockguard.bench.workloads import RUNNERS, WorkloadSpec, is_rejection
from stockguard.domain.events import parse_event_types
from stockguard.engine import Engine
from stockguard.stores.sql.backend import backend_for

ADMISSION_SUFFIX = "+admission"
EVENTS_SUFFIX = "+events:"
LOCATIONS_SUFFIX = "+locations:"
JSON_FIELDS = (
    "strategy",
    "backend",
    "workload",
    "requests",
    "succeeded",
    "rejected",
    "errors",
    "oversold",
    "throughput_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
)


@dataclass
class RunResult:
    strategy: str
    """The strategy's name, with ``+admission`` when admission control ran in front."""
    backend: str
    workload: str
    requests: int
    succeeded: int
    rejected: int
    errors: int
    oversold: int
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    latency_ms: list[float] = field(default_factory=list, repr=False)
    """Per request, in arrival order (the staircase plot)."""
    violations: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    """Admission and strategy counters: fast-path answers, look-ups, batches…"""

    def as_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in JSON_FIELDS}

    @property
    def ok(self) -> bool:
        return self.oversold == 0 and not self.violations


def error_kinds(outcomes: Sequence[str]) -> dict[str, int]:
    """``error_<kind>`` counts of the answers that were neither a hold nor a refusal."""
    kinds = Counter(
        kind for kind in outcomes if kind not in ("held", "replayed") and not is_rejection(kind)
    )
    return {f"error_{kind}": count for kind, count in sorted(kinds.items())}


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def backend_name(url: str) -> str:
    return backend_for(url).name


def default_strategies(redis_url: str | None) -> list[str]:
    """Every registered strategy the given infrastructure supports."""
    return [
        name
        for name in strategies.names()
        if redis_url is not None or "redis" not in strategies.strategy_class(name).requires
    ]


@asynccontextmanager
async def fresh_database(url: str, workdir: Path) -> AsyncIterator[str]:
    """A new empty database on the server (or SQLite file) of ``url``, dropped afterwards."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            _remove_sqlite_files(path)
        return
    backend = backend_for(url)
    # Named after the database given, so runs beside different databases never mix.
    source = re.sub(r"[^A-Za-z0-9_]", "_", parsed.database or "db")[:30]
    name = f"stockguard_bench_{source}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(backend.url, isolation_level="AUTOCOMMIT", pool_size=1)
    quoted = f'"{name}"' if backend.name == "postgres" else f"`{name}`"
    create = f"CREATE DATABASE {quoted}"
    drop = f"DROP DATABASE IF EXISTS {quoted}"
    if backend.name == "postgres":
        drop += " WITH (FORCE)"
    else:
        create += " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
    try:
        async with admin.connect() as connection:
            await connection.execute(text(create))
        try:
            yield parsed.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(drop))
    finally:
        await admin.dispose()


def _remove_sqlite_files(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def _strategy_options(name: str, redis_url: str | None) -> dict[str, object]:
    """Extra options: a Redis strategy gets a keyspace of its own for the run."""
    options: dict[str, object] = {}
    cls = strategies.strategy_class(name)
    if "redis" in cls.requires:
        options["redis_url"] = redis_url
        if "key_prefix" in inspect.signature(cls.__init__).parameters:
            options["key_prefix"] = f"sg-bench-{uuid.uuid4().hex[:10]}"
    return options


@asynccontextmanager
async def _redis_keyspace(options: dict[str, object]) -> AsyncIterator[None]:
    """A Redis strategy's keyspace of this run is deleted afterwards, like its database."""
    try:
        yield
    finally:
        if "key_prefix" in options:
            from stockguard.stores.redis.client import drop_keyspace  # Redis is optional

            await drop_keyspace(str(options["redis_url"]), str(options["key_prefix"]))


async def run_one(
    url: str,
    strategy: str,
    workload: str,
    spec: WorkloadSpec,
    *,
    admission: bool,
    events: str = "all",
    label: str | None = None,
    redis_url: str | None,
    pool_size: int | None,
    done: list[int],
    workdir: Path,
    gc_freeze: bool = True,
) -> RunResult:
    """One workload on one strategy over a fresh database, then the audit."""
    options = _strategy_options(strategy, redis_url)
    async with fresh_database(url, workdir) as fresh_url, _redis_keyspace(options):
        engine = await Engine.open(
            fresh_url,
            strategy,
            pool_size=pool_size,
            admission=AdmissionLimits() if admission else AdmissionLimits.off(),
            events=parse_event_types(events),
            **options,  # type: ignore[arg-type]
        )
        try:
            # The collector as ``serve`` sets it after start-up (``heap.settle``); otherwise
            # a 30-50 ms full collection lands inside some runs and not others and decides
            # their p99.
            previous = heap.settle() if gc_freeze else None
            try:
                samples = await RUNNERS[workload](engine, spec, done)
            finally:
                if previous is not None:
                    heap.unsettle(previous)
            report = await engine.audit()  # write-behind strategies: tables catch up first
            counters = engine.counters() | samples.counters
            counters |= error_kinds(samples.outcome)
        finally:
            await engine.close()
    ordered = sorted(samples.latency_ms)
    succeeded = samples.outcome.count("held") + samples.outcome.count("replayed")
    rejected = sum(1 for kind in samples.outcome if is_rejection(kind))
    return RunResult(
        strategy=label or strategy + (ADMISSION_SUFFIX if admission else ""),
        backend=backend_name(url),
        workload=workload,
        requests=len(samples.outcome),
        succeeded=succeeded,
        rejected=rejected,
        errors=len(samples.outcome) - succeeded - rejected,
        oversold=report.oversold_units,
        throughput_per_s=round(len(samples.outcome) / samples.elapsed_s, 1),
        p50_ms=round(percentile(ordered, 0.50), 2),
        p95_ms=round(percentile(ordered, 0.95), 2),
        p99_ms=round(percentile(ordered, 0.99), 2),
        max_ms=round(ordered[-1] if ordered else 0.0, 2),
        latency_ms=samples.latency_ms,
        violations=report.violations + samples.problems,
        counters=counters,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    urls: Sequence[str]
    strategies: Sequence[str]
    workloads: Sequence[str]
    admission: Sequence[bool]
    spec: WorkloadSpec
    redis_url: str | None = None
    pool_size: int | None = None
    gc_freeze: bool = True
    events: Sequence[str] = ("all",)
    """Outbox settings to compare (``[events] types``); more than one labels each row."""
    locations: Sequence[int] = (1,)
    """Location counts to compare (``WorkloadSpec.locations``); more than one labels each
    row ``+locations:N``."""

    def runs(self) -> list[tuple[str, str, str, bool, str, int]]:
        return [
            (url, workload, strategy, admission, events, locations)
            for url in self.urls
            for workload in self.workloads
            for admission in self.admission
            for events in self.events
            for locations in self.locations
            for strategy in self.strategies
            if locations == 1 or strategy != "sharded"  # one location only (docs/locations.md)
        ]

    def label(self, strategy: str, admission: bool, events: str, locations: int = 1) -> str:
        """A row's name: the strategy, ``+events:<types>`` and ``+locations:N`` when several
        are compared, and ``+admission`` last (the report pairs rows by that suffix)."""
        name = strategy + (f"{EVENTS_SUFFIX}{events}" if len(self.events) > 1 else "")
        name += f"{LOCATIONS_SUFFIX}{locations}" if len(self.locations) > 1 else ""
        return name + (ADMISSION_SUFFIX if admission else "")


async def run_plan(
    plan: Plan, done: list[int], on_result: Callable[[RunResult], None]
) -> list[RunResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="stockguard-bench-") as workdir:
        for url, workload, strategy, admission, events, locations in plan.runs():
            done[0] = 0
            result = await run_one(
                url,
                strategy,
                workload,
                dataclasses.replace(plan.spec, locations=locations),
                admission=admission,
                events=events,
                label=plan.label(strategy, admission, events, locations),
                redis_url=plan.redis_url,
                pool_size=plan.pool_size,
                done=done,
                workdir=Path(workdir),
                gc_freeze=plan.gc_freeze,
            )
            results.append(result)
            on_result(result)
    return results


def ratios(results: Sequence[RunResult]) -> list[tuple[RunResult, float | None]]:
    """Each result's throughput over conditional's, same backend, workload and variant
    (admission, events, locations: the row name's ``+…`` suffixes)."""

    def split(label: str) -> tuple[str, str]:
        name, plus, variant = label.partition("+")
        return name, plus + variant

    baseline = {
        (r.backend, r.workload, split(r.strategy)[1]): r.throughput_per_s
        for r in results
        if split(r.strategy)[0] == "conditional"
    }
    paired = []
    for r in results:
        base = baseline.get((r.backend, r.workload, split(r.strategy)[1]))
        paired.append((r, round(r.throughput_per_s / base, 1) if base else None))
    return paired
