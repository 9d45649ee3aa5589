"""Admission control in front of every strategy: caps, and the sold-out fast path.

Two things happen before a reservation reaches its strategy (DESIGN §3):

* **Caps.** At most ``in_flight_max`` reservations are in flight in this process, and at
  most ``in_flight_per_sku_max`` of them need any one SKU. Beyond that the request is
  answered ``Overloaded`` (HTTP 429 with ``Retry-After``) at once: a queue that grows
  without bound only turns into timeouts and retry storms (seed 002).

* **Sold-out fast path.** Once a refusal has shown that a SKU has nothing available,
  requests that need that SKU are refused without going near its stock row: no lock, no
  write transaction, no place in the strategy's queue. What it still does, to keep
  idempotency exact, is ONE read-only look-up of the order_ids on the unique
  ``reservations.order_id`` index, shared by every fast-path request waiting at that
  moment (up to ``LOOKUP_BATCH_MAX`` per look-up): a replay of an order granted before the
  sell-out still gets its original reservation, and an order_id reused with other lines
  still gets IdempotencyConflict. The counters below show it: ``fastpath`` requests
  answered versus ``lookups`` made for them (one per batch, not per request).

The fast path is off for strategies that write reservations to SQL after answering
(``redis``: its replay check could not see a hold that is still only in Redis); their
own check is already in memory.

How stale "sold out" can be: in this process, never — a release, an expiry sweep that
ended holds, an on-hand change and a confirm that found its hold expired all forget the
mark at once, and a refusal decided before such an event is not learned after it. From
another process (which cannot tell us), at most ``sold_out_ttl_ms`` (default 1,000 ms):
every mark is forgotten that long after it was learned, and the next request goes to the
store again. A refusal is never an oversell; the bound only limits how long returned
stock can go unsold.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from stockguard import domain, metrics
from stockguard.domain import ReserveOutcome, ReserveRequest, StockLevel
from stockguard.stores.sql import bulk
from stockguard.stores.sql.store import SqlStore

IN_FLIGHT_MAX = 50_000
IN_FLIGHT_PER_SKU_MAX = 20_000
SOLD_OUT_TTL_MS = 1_000
RETRY_AFTER_S = 1
LOOKUP_BATCH_MAX = 1_000
"""Fast-path requests whose order_ids are checked in one read-only look-up."""

ReserveCall = Callable[[ReserveRequest], Awaitable[ReserveOutcome]]
StockCall = Callable[[Sequence[str]], Awaitable[list[StockLevel]]]

# Bound once: ``labels()`` costs more than the rest of admitting a request.
_PASSED = metrics.ADMISSION.labels(outcome="passed")
_OVERLOADED = metrics.ADMISSION.labels(outcome="overloaded")
_LOOKUP = metrics.ADMISSION.labels(outcome="lookup")


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    in_flight_max: int = IN_FLIGHT_MAX
    in_flight_per_sku_max: int = IN_FLIGHT_PER_SKU_MAX
    sold_out_ttl_ms: int = SOLD_OUT_TTL_MS
    """How long a sold-out mark is believed; 0 turns the fast path off."""
    retry_after_s: int = RETRY_AFTER_S

    def __post_init__(self) -> None:
        assert 1 <= self.in_flight_per_sku_max <= self.in_flight_max <= 10_000_000
        assert 0 <= self.sold_out_ttl_ms <= 60_000
        assert 1 <= self.retry_after_s <= 3_600

    @classmethod
    def off(cls) -> AdmissionLimits:
        """No fast path and caps too high to matter: the strategy alone (benchmarks)."""
        return cls(in_flight_max=10_000_000, in_flight_per_sku_max=10_000_000, sold_out_ttl_ms=0)


@dataclass(slots=True)
class _Lookup:
    request: ReserveRequest
    sold_out: frozenset[str]
    future: asyncio.Future[ReserveOutcome]


class Admission:
    def __init__(
        self,
        store: SqlStore,
        reserve: ReserveCall,
        stock: StockCall,
        limits: AdmissionLimits | None = None,
        *,
        reservations_in_sql: bool = True,
    ) -> None:
        """``reservations_in_sql``: whether every granted reservation is in the SQL store
        by the time it is answered. The fast path's replay check reads the SQL store, so
        it is off for strategies that write there later (Redis write-behind): a replay
        of an order held in Redis but not yet persisted must not be refused."""
        self.store = store
        self._reserve = reserve
        self._stock = stock
        self.limits = limits or AdmissionLimits()
        self.counters: Counter[str] = Counter()
        """passed (to the strategy), fastpath, lookups, overloaded: for reports and tests."""
        self._in_flight = 0
        self._in_flight_by_sku: dict[str, int] = {}
        self._sold_out_until: dict[str, float] = {}
        self._generation = 0
        """Bumped whenever stock may have come back; refusals older than it teach nothing."""
        self._lookups: list[_Lookup] = []
        self._lookup_task: asyncio.Task[None] | None = None
        self._fast_path = reservations_in_sql and self.limits.sold_out_ttl_ms > 0
        self._off = self.limits == AdmissionLimits.off()
        """Nothing to check: requests go straight to the strategy (still counted)."""

    # ------------------------------------------------------------------ reservations

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        if self._off:
            # Caps nobody can reach and no fast path: the bookkeeping below would cost
            # ~3 µs a request (a fifth of the whole path) to decide nothing.
            self.counters["passed"] += 1
            _PASSED.inc()
            return await self._reserve(request)
        skus = request.skus  # a property that builds a tuple: read it once
        self._admit(skus)
        try:
            sold_out = self._sold_out(skus)
            if sold_out:
                return await self._refuse_fast(request, sold_out)
            generation = self._generation
            self.counters["passed"] += 1
            _PASSED.inc()
            try:
                return await self._reserve(request)
            except domain.OutOfStock as refused:
                if generation == self._generation:
                    self._learn(refused.shortfalls)
                del refused  # the traceback holds this frame: no frame -> error cycle
                raise
        finally:
            self._in_flight -= 1
            by_sku = self._in_flight_by_sku
            for sku in skus:
                left = by_sku[sku] - 1
                if left:
                    by_sku[sku] = left
                else:
                    del by_sku[sku]

    def _admit(self, skus: tuple[str, ...]) -> None:
        limits = self.limits
        by_sku = self._in_flight_by_sku
        if self._in_flight >= limits.in_flight_max:
            self._overloaded(f"{limits.in_flight_max} reservations in flight")
        for sku in skus:
            if by_sku.get(sku, 0) >= limits.in_flight_per_sku_max:
                self._overloaded(f"{limits.in_flight_per_sku_max} reservations of {sku} in flight")
        self._in_flight += 1
        for sku in skus:
            by_sku[sku] = by_sku.get(sku, 0) + 1

    def _overloaded(self, reason: str) -> None:
        self.counters["overloaded"] += 1
        _OVERLOADED.inc()
        raise domain.Overloaded(reason, retry_after_s=self.limits.retry_after_s)

    # ------------------------------------------------------------------ what is sold out

    def _sold_out(self, skus: Iterable[str]) -> frozenset[str]:
        if not self._sold_out_until:
            return frozenset()
        now_s = time.monotonic()
        found = []
        for sku in skus:
            until = self._sold_out_until.get(sku)
            if until is None:
                continue
            if until > now_s:
                found.append(sku)
            else:
                del self._sold_out_until[sku]  # too old to trust: ask the store again
        return frozenset(found)

    def _learn(self, shortfalls: Iterable[domain.Shortfall]) -> None:
        if not self._fast_path:
            return
        until = time.monotonic() + self.limits.sold_out_ttl_ms / 1000
        for short in shortfalls:
            if short.available <= 0:
                self._sold_out_until[short.sku] = until

    def stock_may_have_returned(self, skus: Iterable[str] | None = None) -> None:
        """Forgets sold-out marks (of ``skus``, or all): stock came back or may have."""
        self._generation += 1
        if skus is None:
            self._sold_out_until.clear()
            return
        for sku in skus:
            self._sold_out_until.pop(sku, None)

    def is_sold_out(self, sku: str) -> bool:
        return bool(self._sold_out([sku]))

    @property
    def in_flight(self) -> int:
        """Reservations admitted and not yet answered, in this process."""
        return self._in_flight

    # ------------------------------------------------------------------ the fast path

    async def _refuse_fast(
        self, request: ReserveRequest, sold_out: frozenset[str]
    ) -> ReserveOutcome:
        future: asyncio.Future[ReserveOutcome] = asyncio.get_running_loop().create_future()
        self._lookups.append(_Lookup(request, sold_out, future))
        if self._lookup_task is None or self._lookup_task.done():
            self._lookup_task = asyncio.create_task(self._look_up(), name="stockguard-soldout")
        try:
            return await future
        finally:
            # The refusal's traceback holds this frame; without the del the frame would hold
            # the future that holds the refusal: a cycle per request for the cyclic GC.
            del future

    async def _look_up(self) -> None:
        """Answers waiting fast-path requests, one shared read-only look-up per batch."""
        while self._lookups:
            batch = self._lookups[:LOOKUP_BATCH_MAX]
            del self._lookups[:LOOKUP_BATCH_MAX]
            self.counters["lookups"] += 1
            _LOOKUP.inc()
            try:
                answers = await self._answer(batch)
            except Exception as error:  # StoreUnavailable, or a bug: every waiter hears it
                answers = [copy.copy(error) for _ in batch]
            for lookup, answer in zip(batch, answers, strict=True):
                if lookup.future.done():
                    continue
                self.counters["fastpath"] += 1
                metrics.SOLDOUT_FASTPATH.inc()
                if isinstance(answer, ReserveOutcome):
                    lookup.future.set_result(answer)
                else:
                    lookup.future.set_exception(answer)

    async def _answer(self, batch: Sequence[_Lookup]) -> list[ReserveOutcome | Exception]:
        async with self.store.transaction(read_only=True) as tx:
            earlier = await bulk.reservations_by_order(
                tx, [lookup.request.order_id for lookup in batch]
            )
        others = sorted(
            {
                sku
                for lookup in batch
                if lookup.request.order_id not in earlier
                for sku in lookup.request.skus
                if sku not in lookup.sold_out
            }
        )
        levels = {level.sku: level for level in await self._stock(others)} if others else {}
        answers: list[ReserveOutcome | Exception] = []
        for lookup in batch:
            request = lookup.request
            found = earlier.get(request.order_id)
            if found is not None:
                if found.same_request(request.lines):
                    answers.append(ReserveOutcome(found, created=False))
                else:
                    answers.append(domain.IdempotencyConflict(request.order_id, found.id))
                continue
            missing = [s for s in request.skus if s not in lookup.sold_out and s not in levels]
            if missing:
                answers.append(domain.UnknownSku(missing))
                continue
            shortfalls = [
                domain.Shortfall(line.sku, line.quantity, 0)
                if line.sku in lookup.sold_out
                else domain.Shortfall(line.sku, line.quantity, max(levels[line.sku].available, 0))
                for line in request.lines
                if line.sku in lookup.sold_out or levels[line.sku].available < line.quantity
            ]
            answers.append(domain.OutOfStock(shortfalls))
        return answers
