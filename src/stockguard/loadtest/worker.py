"""One load process: its share of the virtual users, and a record of every request.

Each process gets a ``Job`` (its share of the plan), opens its connections, reports
``ready`` and waits for the common start time (``time.monotonic`` is one clock for every
process on Linux). Every 0.5 s it sends what it recorded since the last report (start,
latency, status and kind of each request, as packed arrays) and its active VUs; at the end
it sends the rest and the reservations it was granted, for the audit.

The hot path per request is: build bytes, write, parse the status line and length, append
four numbers. Nothing is decoded as JSON except the id of a granted hold.

Long (~430 lines) because the four user models (fixed VUs, ramping VUs, fixed buyers,
open arrival rate) share one loop of connection handling and sampling; split, each would
copy it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stockguard.loadtest import http1
from stockguard.loadtest.plan import (
    CONFIRM,
    NO_ANSWER,
    READ,
    RELEASE,
    RESERVE,
    Plan,
    share,
    vus_at,
)

TICK_S = 0.5
ERRORS_KEPT = 5

WALKED, CONFIRMED, RELEASED = "walked", "confirmed", "released"


@dataclass(frozen=True)
class Job:
    """What one process does: its index among ``processes`` and the run's common facts."""

    index: int
    processes: int
    host: str
    port: int
    plan: Plan
    run_id: str
    skus: tuple[str, ...]
    engine: str = "raw"
    token: str | None = None
    bare: bool = False
    """Against the ``--calibrate`` echo: any 2xx counts as granted, ids are made up."""
    seed: int = 0


@dataclass
class Granted:
    """A hold the service granted (201), what it was for, and what the buyer did with it."""

    reservation_id: str
    order_id: str
    lines: tuple[tuple[str, int], ...]
    action: str = WALKED
    action_status: int = 0


@dataclass
class Records:
    start: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    status: array[int] = field(default_factory=lambda: array("h"))
    kind: array[int] = field(default_factory=lambda: array("b"))
    sent: int = 0

    def unsent(self) -> tuple[bytes, bytes, bytes, bytes]:
        n, at = len(self.status), self.sent
        self.sent = n
        return (
            self.start[at:n].tobytes(),
            self.latency[at:n].tobytes(),
            self.status[at:n].tobytes(),
            self.kind[at:n].tobytes(),
        )


class Worker:
    def __init__(self, job: Job, report: Callable[[tuple[Any, ...]], None]) -> None:
        self.job = job
        self.plan = job.plan
        self.report = report
        self.records = Records()
        self.granted: list[Granted] = []
        self.errors: list[str] = []
        self.active = 0
        self.dropped = 0
        self.t0 = 0.0
        self.cpu_at_start = time.process_time()
        self.rng = random.Random(job.seed * 1_000_003 + job.index)
        self.prefix = f"{job.run_id}-{job.index}-"
        self.loop = asyncio.get_running_loop()
        self.client: Any = None
        if job.engine == "httpx":
            connections = max(1, self.plan.vus_max)
            self.client = http1.httpx_client(
                f"http://{job.host}:{job.port}", connections, self.plan.timeout_s
            )
            self.requests: http1.Requests = http1.HttpxRequests(
                self.client, job.token, bare=job.bare
            )
        else:
            self.requests = http1.RawRequests(f"{job.host}:{job.port}", job.token, bare=job.bare)
        weights = [1.0 / (rank**self.plan.mix.zipf_s) for rank in range(1, len(job.skus) + 1)]
        total = sum(weights)
        running = 0.0
        self.cumulative: list[float] = []
        for weight in weights:
            running += weight / total
            self.cumulative.append(running)
        self.orders = 0
        self.ok = (200, 201) if job.bare else (201,)

    # ------------------------------------------------------------------ connections

    async def connection(self, connect: bool) -> http1.Connection:
        if self.client is not None:
            return http1.HttpxConnection(self.client)
        opened = http1.RawConnection(self.job.host, self.job.port, self.plan.timeout_s)
        if connect:
            try:
                await asyncio.wait_for(opened.connect(), self.plan.timeout_s)
            except (OSError, TimeoutError) as failed:
                self.note(failed)  # the first send connects again
        return opened

    async def connections(self, count: int) -> list[http1.Connection]:
        opened: list[http1.Connection] = []
        for at in range(0, count, 100):  # in small waves: no SYN flood on the backlog
            opened += await asyncio.gather(
                *(self.connection(True) for _ in range(min(100, count - at)))
            )
        return opened

    def note(self, error: BaseException) -> None:
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(f"{type(error).__name__}: {error}")

    # ------------------------------------------------------------------ one request

    async def call(self, conn: http1.Connection, request: object, kind: int) -> tuple[int, bytes]:
        started = time.monotonic()
        try:
            status, body = await conn.send(request)
        except (OSError, TimeoutError, ConnectionError, ValueError) as failed:
            self.note(failed)
            status, body = NO_ANSWER, b""
        ended = time.monotonic()
        records = self.records
        records.start.append(started - self.t0)
        records.latency.append(ended - started)
        records.status.append(status)
        records.kind.append(kind)
        return status, body

    def order_id(self) -> str:
        self.orders += 1
        return f"{self.prefix}{self.orders}"

    def zipf_sku(self) -> str:
        at = bisect.bisect_left(self.cumulative, self.rng.random())
        return self.job.skus[min(at, len(self.job.skus) - 1)]

    async def think(self) -> None:
        if self.plan.think_s > 0:
            await asyncio.sleep(self.plan.think_s * self.rng.uniform(0.5, 1.5))

    # ------------------------------------------------------------------ iterations

    async def buy_one(self, conn: http1.Connection) -> None:
        """drop / peak / flash: one order of one unit of the one SKU."""
        order_id = self.order_id()
        lines = ((self.job.skus[0], 1),)
        request = self.requests.reserve(order_id, lines, self.plan.ttl_s)
        status, body = await self.call(conn, request, RESERVE)
        if status in self.ok:
            found = order_id if self.job.bare else http1.reservation_id(body)
            self.granted.append(Granted(found or "", order_id, lines))

    async def shop(self, conn: http1.Connection) -> None:
        """Look at stock, hold a multi-line order, then pay, cancel or walk away."""
        mix = self.plan.mix
        for _ in range(mix.reads):
            await self.call(conn, self.requests.stock(self.zipf_sku()), READ)
        await self.think()
        wanted = self.rng.randint(1, min(mix.lines_max, len(self.job.skus)))
        skus: set[str] = set()
        while len(skus) < wanted:
            skus.add(self.zipf_sku())
        lines = tuple((sku, self.rng.randint(1, mix.quantity_max)) for sku in sorted(skus))
        order_id = self.order_id()
        status, body = await self.call(
            conn, self.requests.reserve(order_id, lines, self.plan.ttl_s), RESERVE
        )
        if status not in self.ok:
            return
        found = order_id if self.job.bare else http1.reservation_id(body)
        hold = Granted(found or "", order_id, lines)
        self.granted.append(hold)
        if not found:
            return
        await self.think()
        roll = self.rng.random()
        if roll < mix.confirm:
            hold.action, kind = CONFIRMED, CONFIRM
        elif roll < mix.confirm + mix.release:
            hold.action, kind = RELEASED, RELEASE
        else:
            return  # walked away: the hold expires after its TTL
        action = "confirm" if kind == CONFIRM else "release"
        hold.action_status, _ = await self.call(conn, self.requests.transition(found, action), kind)

    def iteration(self) -> Callable[[http1.Connection], Awaitable[None]]:
        return self.shop if self.plan.scenario == "shop" else self.buy_one

    # ------------------------------------------------------------------ models

    async def closed(self, vus: int, duration_s: float) -> None:
        """``vus`` virtual users, each looping iterations for ``duration_s``."""
        conns = await self.connections(vus)
        await self.started()
        until = self.t0 + duration_s
        iteration = self.iteration()

        async def user(conn: http1.Connection) -> None:
            self.active += 1
            try:
                while time.monotonic() < until:
                    await iteration(conn)
                    await self.think()
            finally:
                self.active -= 1

        await asyncio.gather(*(user(conn) for conn in conns))

    async def ramping(self) -> None:
        """k6's ramping-vus: users start (connecting then) and stop (after their current
        iteration) to follow the stages, this process's share of each target."""
        await self.started()
        stages = self.plan.stages
        end = self.t0 + sum(stage.duration_s for stage in stages)
        iteration = self.iteration()
        users: list[tuple[asyncio.Task[None], list[bool]]] = []

        async def user(stop: list[bool]) -> None:
            conn = await self.connection(False)
            self.active += 1
            try:
                while not stop[0] and time.monotonic() < end:
                    await iteration(conn)
                    await self.think()
            finally:
                self.active -= 1
                conn.close()

        while True:
            now = time.monotonic()
            if now >= end:
                break
            target = share(round(vus_at(stages, now - self.t0)), self.job.index, self.job.processes)
            running = [u for u in users if not u[1][0]]
            for _ in range(target - len(running)):
                stop = [False]
                users.append((asyncio.create_task(user(stop)), stop))
            for _, stop in running[target:] if len(running) > target else []:
                stop[0] = True
            await asyncio.sleep(0.05)
        for _, stop in users:
            stop[0] = True
        await asyncio.gather(*(task for task, _ in users))

    async def flash(self) -> None:
        """A fixed number of buyers, each buying once; at most this process's share of
        ``in_flight`` at a time; with a rate, buyers arrive on a schedule and wait for a
        free connection (a waiting room), otherwise they all arrive at once."""
        buyers = share(self.plan.buyers, self.job.index, self.job.processes)
        cap = max(1, share(self.plan.in_flight, self.job.index, self.job.processes))
        conns = await self.connections(min(cap, buyers))
        await self.started()
        free: asyncio.Queue[http1.Connection] = asyncio.Queue()
        for conn in conns:
            free.put_nowait(conn)
        rate = self.plan.rate / self.job.processes if self.plan.rate else None

        async def buyer() -> None:
            conn = await free.get()
            self.active += 1
            try:
                await self.buy_one(conn)
            finally:
                self.active -= 1
                free.put_nowait(conn)

        if rate is None:
            await asyncio.gather(*(buyer() for _ in range(buyers)))
            return
        tasks = []
        for n in range(buyers):
            await self.sleep_until(self.t0 + n / rate)
            tasks.append(asyncio.create_task(buyer()))
        await asyncio.gather(*tasks)

    async def open_model(self, duration_s: float) -> None:
        """k6's constant-arrival-rate: iterations start on a schedule whatever the answers'
        speed, each on a free pre-opened connection (at most ``vus``); an arrival with no
        free connection is dropped and counted, as k6 does."""
        assert self.plan.rate is not None
        rate = self.plan.rate / self.job.processes
        vus = max(1, share(self.plan.vus, self.job.index, self.job.processes))
        free = await self.connections(vus)
        await self.started()
        until = self.t0 + duration_s
        iteration = self.iteration()
        tasks: set[asyncio.Task[None]] = set()

        async def run(conn: http1.Connection) -> None:
            self.active += 1
            try:
                await iteration(conn)
            finally:
                self.active -= 1
                free.append(conn)

        n = 0
        while True:
            due = self.t0 + n / rate
            if due >= until:
                break
            await self.sleep_until(due)
            n += 1
            if not free:
                self.dropped += 1
                continue
            task = asyncio.create_task(run(free.pop()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def sleep_until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ the run

    async def started(self) -> None:
        """Report ready, take the common start time, wait for it, start the reports."""
        self.report(("ready", self.job.index))
        start_at = await self.loop.run_in_executor(None, self.take_start)
        self.t0 = start_at
        await self.sleep_until(start_at)
        self.cpu_at_start = time.process_time()
        self.ticker = asyncio.create_task(self.tick())

    take_start: Callable[[], float]

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.send_tick()

    def send_tick(self) -> None:
        self.report(("tick", self.job.index, time.monotonic(), *self.records.unsent(), self.active))

    async def run(self) -> None:
        plan = self.plan
        try:
            if plan.scenario == "flash":
                await self.flash()
            elif plan.scenario == "peak":
                await self.ramping()
            else:
                if plan.rate:
                    await self.open_model(plan.duration_s)
                else:
                    vus = share(plan.vus, self.job.index, self.job.processes)
                    await self.closed(vus, plan.duration_s)
        finally:
            ticker = getattr(self, "ticker", None)
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            if self.client is not None:
                await self.client.aclose()
        self.send_tick()
        self.report(
            (
                "done",
                self.job.index,
                self.granted,
                self.dropped,
                time.process_time() - self.cpu_at_start,
                self.errors,
            )
        )


def main(job: Job, out: Any, start: Any) -> None:
    """The process's entry point (``multiprocessing``): ``out`` gets the reports,
    ``start`` gives the common start time."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - granian[uvloop] brings it
        pass

    async def go() -> None:
        worker = Worker(job, out.put)
        worker.take_start = start.get
        await worker.run()

    try:
        asyncio.run(go())
    except BaseException as crashed:
        out.put(("crashed", job.index, f"{type(crashed).__name__}: {crashed}"))
        raise
