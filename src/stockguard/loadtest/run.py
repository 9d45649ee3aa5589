"""The load processes, started together and heard from while they run.

``drive`` starts one process per core (``multiprocessing``), waits until every one
has its connections open, gives them one start time, merges their 0.5 s reports into a
live line (rich) and returns everything they recorded as numpy arrays.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from stockguard.loadtest import worker
from stockguard.loadtest.plan import Plan

READY_S_MAX = 120.0
START_DELAY_S = 0.3
GRACE_S = 30.0
"""How long after the plan's end (plus the request timeout) the processes may take."""
LATENCY_BINS = np.logspace(-6, 3, 901)
"""Log-spaced latency bins (1 µs … 1,000 s) of the live p95."""


@dataclass
class Recorded:
    """Every request of one run, in the order the processes reported them."""

    start_s: np.ndarray[Any, np.dtype[np.float64]]
    latency_s: np.ndarray[Any, np.dtype[np.float64]]
    status: np.ndarray[Any, np.dtype[np.int16]]
    kind: np.ndarray[Any, np.dtype[np.int8]]
    vus: list[tuple[float, int]]
    """(seconds since start, VUs active over all processes) every 0.5 s."""
    granted: list[worker.Granted]
    dropped: int
    cpu_s: float
    """CPU seconds the load processes used (user + system)."""
    wall_s: float
    processes: int
    engine: str
    errors: list[str] = field(default_factory=list)


class LoadFailed(RuntimeError):
    """A load process could not start or crashed."""


class _Live:
    """The progress line: elapsed, rate over the last second, statuses, p95 so far, VUs."""

    def __init__(self, console: Console, label: str, planned_s: float | None) -> None:
        self.console = console
        self.label = label
        self.planned_s = planned_s
        self.statuses: Counter[int] = Counter()
        self.histogram = np.zeros(len(LATENCY_BINS) + 1, dtype=np.int64)
        self.recent: list[tuple[float, int]] = []
        self.requests = 0
        self.vus = 0
        self.elapsed = 0.0
        self.live: Live | None = None
        self.printed_at = 0.0

    def __enter__(self) -> _Live:
        if self.console.is_terminal:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(None, None, None)
        else:
            self.console.print(self.render())

    def add(
        self, elapsed: float, latency: np.ndarray[Any, Any], status: np.ndarray[Any, Any]
    ) -> None:
        self.elapsed = max(self.elapsed, elapsed)
        self.requests += len(status)
        self.recent.append((elapsed, len(status)))
        self.recent = [(t, n) for t, n in self.recent if t > self.elapsed - 1.0]
        values, counts = np.unique(status, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.statuses[int(value)] += int(count)
        np.add.at(self.histogram, np.searchsorted(LATENCY_BINS, latency), 1)

    def p95_ms(self) -> float:
        total = int(self.histogram.sum())
        if not total:
            return 0.0
        at = int(np.searchsorted(np.cumsum(self.histogram), 0.95 * total))
        return float(LATENCY_BINS[min(at, len(LATENCY_BINS) - 1)]) * 1000

    def render(self) -> Text:
        rate = sum(n for _, n in self.recent)
        planned = f"/{self.planned_s:g}s" if self.planned_s else "s"
        statuses = " ".join(f"{s}×{n:,}" for s, n in sorted(self.statuses.items()))
        return Text(
            f"{self.label}  {self.elapsed:5.1f}{planned}  {self.requests:,} requests  "
            f"{rate:,}/s  {statuses or '-'}  p95 {self.p95_ms():,.1f} ms  VUs {self.vus:,}"
        )

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())
        elif time.monotonic() - self.printed_at >= 5.0:
            self.printed_at = time.monotonic()
            self.console.print(self.render())


def drive(jobs: list[worker.Job], plan: Plan, console: Console, label: str) -> Recorded:
    """Runs the jobs (one process each) to the end of the plan and merges their records."""
    # fork where there is one: a child starts in milliseconds with every module imported (no
    # event loop or thread is running in this process at this point); spawn elsewhere.
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    out: Any = context.Queue()
    starts = [context.Queue() for _ in jobs]
    processes = [
        context.Process(target=worker.main, args=(job, out, starts[job.index]), daemon=True)
        for job in jobs
    ]
    for process in processes:
        process.start()
    parts: dict[str, list[np.ndarray[Any, Any]]] = {"start": [], "lat": [], "st": [], "kind": []}
    vus_by_process = [0] * len(jobs)
    vus: list[tuple[float, int]] = []
    granted: list[worker.Granted] = []
    errors: list[str] = []
    dropped = 0
    cpu_s = 0.0
    done = 0
    t0 = 0.0
    try:
        ready = 0
        deadline = time.monotonic() + READY_S_MAX
        while ready < len(jobs):
            message = _next(out, deadline, processes)
            if message[0] == "ready":
                ready += 1
            elif message[0] == "crashed":
                raise LoadFailed(f"load process {message[1]} crashed: {message[2]}")
        t0 = time.monotonic() + START_DELAY_S
        for start in starts:
            start.put(t0)
        planned = plan.planned_s
        limit = (planned if planned is not None else 3_600.0) + plan.timeout_s + GRACE_S
        deadline = t0 + limit
        with _Live(console, label, planned) as live:
            while done < len(jobs):
                message = _next(out, deadline, processes)
                if message[0] == "tick":
                    _, index, at, start_b, lat_b, st_b, kind_b, active = message
                    lat = np.frombuffer(lat_b, dtype=np.float64)
                    st = np.frombuffer(st_b, dtype=np.int16)
                    parts["start"].append(np.frombuffer(start_b, dtype=np.float64))
                    parts["lat"].append(lat)
                    parts["st"].append(st)
                    parts["kind"].append(np.frombuffer(kind_b, dtype=np.int8))
                    vus_by_process[index] = active
                    if index == 0 or len(jobs) == 1:
                        vus.append((at - t0, sum(vus_by_process)))
                    live.vus = sum(vus_by_process)
                    live.add(at - t0, lat, st)
                    live.refresh()
                elif message[0] == "done":
                    _, _index, got, lost, cpu, failures = message
                    granted += got
                    dropped += lost
                    cpu_s += cpu
                    errors += failures
                    done += 1
                elif message[0] == "crashed":
                    raise LoadFailed(f"load process {message[1]} crashed: {message[2]}")
        wall_s = time.monotonic() - t0
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return Recorded(
        start_s=_joined(parts["start"], np.float64),
        latency_s=_joined(parts["lat"], np.float64),
        status=_joined(parts["st"], np.int16),
        kind=_joined(parts["kind"], np.int8),
        vus=vus,
        granted=granted,
        dropped=dropped,
        cpu_s=cpu_s,
        wall_s=wall_s,
        processes=len(jobs),
        engine=jobs[0].engine,
        errors=errors,
    )


def _joined(parts: list[np.ndarray[Any, Any]], dtype: Any) -> np.ndarray[Any, Any]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _next(out: Any, deadline: float, processes: list[Any]) -> tuple[Any, ...]:
    while True:
        try:
            return tuple(out.get(timeout=0.25))
        except queue.Empty:
            pass
        if time.monotonic() > deadline:
            raise LoadFailed("the load processes did not finish in time")
        dead = [p for p in processes if p.exitcode not in (None, 0)]
        if dead:
            raise LoadFailed(f"a load process exited with code {dead[0].exitcode}")
