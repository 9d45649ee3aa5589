"""Admission control in front of every strategy: caps, a wait budget, the sold-out fast path.

Three things happen before a reservation reaches its strategy (docs/design.md#admission):

* **Caps.** At most ``in_flight_max`` reservations are in flight in this process, and at
  most ``in_flight_per_sku_max`` of them need any one SKU. Beyond that the request is
  answered ``Overloaded`` (HTTP 429 with ``Retry-After``) at once: a queue that grows
  without bound only turns into timeouts and retry storms (docs/design.md#seed-002).

* **Wait budget.** The caps bound a count, and a count means nothing without a speed: 5,000
  requests are 0.1 s of work for the coalescing writer and 10 s for one transaction per
  request, past the store's 10 s pool timeout (every request then waits, and many end in
  503). So admission also bounds the *time* a request can expect to spend in this process,
  ``queue_wait_s_max`` (default 2 s), by Little's law: it measures how many requests the
  strategy answers per second while it has work (``DrainRate``) and keeps about half a
  budget's worth of work in the strategy (the *allowance*: rate × budget / 2). What is
  handed to the strategy cannot be taken back (a request in a coalescing batch or in a
  transaction must run), so the rest waits here, in arrival order, where it can still be
  refused: at once when it arrives if the requests ahead of it cannot get in within the
  other half of the budget at the measured rate, later if the rate falls, and at the
  latest when it has waited half the budget. The refusal is ``Overloaded`` (429 with a
  ``Retry-After`` of about the time the work ahead needs) and comes before the strategy
  sees the request, so nothing of it is written.

  Refusing on a guess would refuse what a batching strategy could have served: its first
  batches are small, and its next batch takes everything that waits. So for the first
  ``DRAIN_TAU_S`` of busy time nothing is refused on the rate: up to ``cold_in_flight_max``
  requests (or the allowance, if the first answers already show more) go to the strategy
  and the others wait, refused only past half the budget. And the rate follows a rise
  within a few batches (see ``DrainRate``), so the allowance of a fast strategy grows
  with each batch it answers: a budget's worth of work at 45,000 a second is 45,000
  requests, and it never waits here; a slow one keeps about ``queue_wait_s_max`` seconds
  of work in this process and answers the rest 429 at once.

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

Over 350 lines on purpose: caps, the wait budget and the fast path share one per-request
bookkeeping (in flight, the drain rate, the waiting line) that splitting would expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from stockguard import domain, metrics
from stockguard.domain import ReserveOutcome, ReserveRequest, StockLevel
from stockguard.stores.contract import Store

IN_FLIGHT_MAX = 50_000
IN_FLIGHT_PER_SKU_MAX = 20_000
SOLD_OUT_TTL_MS = 1_000
RETRY_AFTER_S = 1
LOOKUP_BATCH_MAX = 1_000
"""Fast-path requests whose order_ids are checked in one read-only look-up."""
QUEUE_WAIT_S_MAX = 2.0
"""Default wait budget: well inside the store's 10 s pool timeout and a client's patience."""
COLD_IN_FLIGHT_MAX = 64
"""Default of requests let into the strategy before its speed is known (cold start)."""
DRAIN_TAU_S = 0.5
"""Seconds of busy time over which the drain rate is averaged (EWMA time constant)."""
QUICK_ANSWERS_MIN = 8
"""The quick average counts only when it rests on this many answers: fewer, and the
moment just after an answer reads as a burst."""
RETRY_AFTER_S_MAX = 60
WAIT_CHECK_S = 0.05
"""While requests wait, the budget is re-checked at least this often (besides answers)."""
ALLOWANCE_REFRESH_S = 0.005
"""How often the strategy's allowance follows the rate when nobody waits (cost per answer)."""

ReserveCall = Callable[[ReserveRequest], Awaitable[ReserveOutcome]]
StockCall = Callable[[Sequence[str]], Awaitable[list[StockLevel]]]

# Bound once: ``labels()`` costs more than the rest of admitting a request.
_PASSED = metrics.ADMISSION.labels(outcome="passed")
_OVERLOADED = metrics.ADMISSION.labels(outcome="overloaded")
_LOOKUP = metrics.ADMISSION.labels(outcome="lookup")
_QUEUED = metrics.ADMISSION.labels(outcome="queued")


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    in_flight_max: int = IN_FLIGHT_MAX
    in_flight_per_sku_max: int = IN_FLIGHT_PER_SKU_MAX
    sold_out_ttl_ms: int = SOLD_OUT_TTL_MS
    """How long a sold-out mark is believed; 0 turns the fast path off."""
    retry_after_s: int = RETRY_AFTER_S
    queue_wait_s_max: float = QUEUE_WAIT_S_MAX
    """A request whose expected wait in this process (the work ahead of it over the
    measured drain rate) exceeds this is refused ``Overloaded``; 0 turns the budget off."""
    cold_in_flight_max: int = COLD_IN_FLIGHT_MAX
    """Requests the strategy may hold before its speed is known (the first ``DRAIN_TAU_S``
    of busy time), or more if the first answers already show it can take more."""
    in_flight_floor: int = 1
    """Requests the strategy may always hold, whatever the measured rate: a batching
    strategy's batch (the engine sets it from ``Strategy.burst_in_flight``)."""

    def __post_init__(self) -> None:
        assert 1 <= self.in_flight_per_sku_max <= self.in_flight_max <= 10_000_000
        assert 0 <= self.sold_out_ttl_ms <= 60_000
        assert 1 <= self.retry_after_s <= 3_600
        assert 0 <= self.queue_wait_s_max <= 3_600
        assert 1 <= self.cold_in_flight_max <= 10_000_000
        assert 1 <= self.in_flight_floor <= 10_000_000

    @classmethod
    def off(cls) -> AdmissionLimits:
        """No fast path, no wait budget and caps too high to matter: the strategy alone
        (benchmarks)."""
        return cls(
            in_flight_max=10_000_000,
            in_flight_per_sku_max=10_000_000,
            sold_out_ttl_ms=0,
            queue_wait_s_max=0,
        )


class DrainRate:
    """Requests answered per second of *busy* time, exponentially weighted.

    Busy time is time with at least one request at work: while nothing is asked, nothing
    is learned, so an idle process keeps what it knew about its speed, and a strategy that
    stops answering while busy sees its rate fall towards 0.

    Two averages run side by side and the higher one is the rate: one over ``tau_s`` of
    busy time (steady), one over ``tau_s / 10`` (quick). A batching strategy answers more
    per second the more it is given (its next batch takes everything that waits), so its
    rate jumps when a burst arrives; the quick average follows within a few batches
    instead of refusing the burst on last second's pace. A strategy that slows down is
    believed only as the steady average falls: admitting a little too much for a moment
    costs little, since what waits here can still be refused (see ``Admission``). The
    quick average counts only when it rests on ``QUICK_ANSWERS_MIN`` answers, or a slow
    strategy would read as fast just after each answer.

    Each answer adds 1 to a weight that decays by ``exp(-busy / tau)``; at a steady rate r
    the weight tends to ``r * tau``. Until ``tau`` of busy time has passed the weight has
    not filled up, so it is divided by ``tau * (1 - exp(-busy / tau))``: 10 answers after
    20 ms already read as 500 a second.

    Times are ``time.monotonic()`` seconds, passed in, so tests drive their own clock.
    """

    __slots__ = ("_busy_s", "_since_s", "_taus_s", "_weight_at_s", "_weights", "tau_s")

    def __init__(self, tau_s: float = DRAIN_TAU_S) -> None:
        assert tau_s > 0
        self.tau_s = tau_s
        self._taus_s = (tau_s, tau_s / 10)
        self._weights = [0.0, 0.0]
        self._weight_at_s = 0.0
        """The busy clock when ``_weights`` were last decayed."""
        self._busy_s = 0.0
        """Busy time up to ``_since_s`` (or in total, when idle)."""
        self._since_s: float | None = None
        """When the busy clock last advanced; None while idle."""

    def busy(self, now_s: float) -> None:
        """Work is in progress from now on (idempotent)."""
        if self._since_s is None:
            self._since_s = now_s
        else:
            self._advance(now_s)

    def idle(self, now_s: float) -> None:
        """Nothing is in progress from now on: the busy clock stops."""
        self._advance(now_s)
        self._since_s = None

    def answered(self, now_s: float, count: int = 1) -> None:
        self._advance(now_s)
        elapsed_s = self._busy_s - self._weight_at_s
        weights = self._weights
        for n, tau_s in enumerate(self._taus_s):
            weights[n] = weights[n] * math.exp(-elapsed_s / tau_s) + count
        self._weight_at_s = self._busy_s

    def busy_s(self, now_s: float) -> float:
        """Busy time so far: how much the rate has seen."""
        if self._since_s is not None and now_s > self._since_s:
            return self._busy_s + now_s - self._since_s
        return self._busy_s

    def per_s(self, now_s: float) -> float:
        """The rate now; 0.0 before the first answer."""
        if not self._weights[0]:
            return 0.0
        busy_s = self.busy_s(now_s)
        elapsed_s = busy_s - self._weight_at_s
        rate = 0.0
        for n, (weight, tau_s) in enumerate(zip(self._weights, self._taus_s, strict=True)):
            weight *= math.exp(-elapsed_s / tau_s)
            filled = -math.expm1(-busy_s / tau_s)
            if filled > 0 and (n == 0 or weight >= QUICK_ANSWERS_MIN):
                rate = max(rate, weight / (tau_s * filled))
        return rate

    def _advance(self, now_s: float) -> None:
        since = self._since_s
        if since is not None and now_s > since:
            self._busy_s += now_s - since
            self._since_s = now_s


@dataclass(slots=True)
class _Waiter:
    arrived_s: float
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Lookup:
    request: ReserveRequest
    sold_out: frozenset[str]
    future: asyncio.Future[ReserveOutcome]


class Admission:
    def __init__(
        self,
        store: Store,
        reserve: ReserveCall,
        stock: StockCall,
        limits: AdmissionLimits | None = None,
        *,
        reservations_in_sql: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``reservations_in_sql``: whether every granted reservation is in the SQL store
        by the time it is answered. The fast path's replay check reads the SQL store, so
        it is off for strategies that write there later (Redis write-behind): a replay
        of an order held in Redis but not yet persisted must not be refused.
        ``clock``: monotonic seconds, for the wait budget (tests pass their own)."""
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
        self._clock = clock
        self._budget_s = self.limits.queue_wait_s_max
        self._wait_s_max = self._budget_s / 2
        """Half the budget may be spent waiting here, the other half in the strategy."""
        self._in_work = 0
        """Requests handed to the strategy (or the fast path's look-up) and not answered."""
        self._waiting: deque[_Waiter] = deque()
        self._allowance = self.limits.cold_in_flight_max
        """How many requests the strategy may hold now (see the module docstring)."""
        self._allowance_at_s = 0.0
        self._rate = DrainRate()
        self._wait_check: asyncio.TimerHandle | None = None

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
            if self._budget_s:
                if self._waiting or self._in_work >= self._allowance:
                    await self._wait_turn()
                    sold_out = self._sold_out(skus)  # learned while this one waited?
                    if sold_out:
                        self._work_done(answered=False)
                        return await self._refuse_fast(request, sold_out)
                else:
                    self._work_started()
            generation = self._generation
            self.counters["passed"] += 1
            _PASSED.inc()
            try:
                return await self._reserve(request)
            except domain.OutOfStock as refused:
                # A line pinned to one location, or a request that may not split, was
                # refused on part of the SKU's stock: no sold-out mark for the SKU then.
                if generation == self._generation and _whole_stock(request):
                    self._learn(refused.shortfalls)
                del refused  # the traceback holds this frame: no frame -> error cycle
                raise
            finally:
                if self._budget_s:
                    self._work_done(answered=True)
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

    def _overloaded(self, reason: str, retry_after_s: int | None = None) -> None:
        raise self._overload(reason, retry_after_s)

    def _overload(self, reason: str, retry_after_s: int | None = None) -> domain.Overloaded:
        self.counters["overloaded"] += 1
        _OVERLOADED.inc()
        return domain.Overloaded(reason, retry_after_s=retry_after_s or self.limits.retry_after_s)

    # ------------------------------------------------------------------ the wait budget

    def _work_started(self) -> None:
        if not self._in_work:
            self._rate.busy(self._clock())
        self._in_work += 1

    def _work_done(self, *, answered: bool) -> None:
        self._in_work -= 1
        now_s = self._clock()
        if answered:
            self._rate.answered(now_s)
        if self._waiting:
            self._check_waiting(now_s)
        elif now_s - self._allowance_at_s >= ALLOWANCE_REFRESH_S:
            self._refresh_allowance(now_s)
        if not self._in_work:
            self._rate.idle(now_s)

    def _refresh_allowance(self, now_s: float) -> float:
        """Sets how many requests the strategy may hold; returns the rate if it is known
        well enough to refuse on (0.0 otherwise)."""
        rate = self._rate.per_s(now_s)
        allowance = int(rate * self._wait_s_max)
        self._allowance_at_s = now_s
        if self._rate.busy_s(now_s) < self._rate.tau_s:  # not known well enough yet
            self._allowance = max(self.limits.cold_in_flight_max, allowance)
            return 0.0
        # Never below what a batching strategy takes at once (``in_flight_floor``: the
        # engine sets it from the strategy's ``burst_in_flight``): a rate measured while
        # only a few buyers came is that load's pace, not the strategy's speed, and such a
        # strategy clears a burst in one batch whatever the last pace was.
        self._allowance = max(self.limits.in_flight_floor, allowance)
        return rate

    def _entry_wait_s(self, position: int, rate: float) -> float:
        """Expected seconds until the ``position``-th request from now (1: the next) gets
        into the strategy: the requests ahead of it beyond the allowance, at the rate."""
        return max(self._in_work + position - self._allowance, 0) / rate

    def _retry_after_s(self, wait_s: float) -> int:
        """Long enough for the work ahead to drain, so refused clients do not all come
        back into the same queue at once."""
        return min(max(self.limits.retry_after_s, math.ceil(wait_s)), RETRY_AFTER_S_MAX)

    async def _wait_turn(self) -> None:
        """Waits for room in the strategy, or raises Overloaded when this request cannot
        expect to get in within its part of the budget. Returns with the room taken."""
        now_s = self._clock()
        rate = self._refresh_allowance(now_s)
        if rate:
            wait_s = self._entry_wait_s(len(self._waiting) + 1, rate)
            if wait_s > self._wait_s_max:
                self._overloaded(self._over_budget(wait_s), self._retry_after_s(wait_s))
        if not self._waiting and self._in_work < self._allowance:
            self._work_started()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(now_s, future)
        self._waiting.append(waiter)
        self.counters["queued"] += 1
        _QUEUED.inc()
        if self._in_work < self._allowance:  # room, but older waiters go first
            self._check_waiting(now_s)
        self._schedule_wait_check()
        try:
            await future
        except asyncio.CancelledError:
            if future.cancelled():  # cancelled while waiting: leave the line
                with contextlib.suppress(ValueError):  # unless a check took it out already
                    self._waiting.remove(waiter)
            elif future.exception() is None:  # room given, then cancelled: give it back
                self._work_done(answered=False)
            raise
        finally:
            del future, waiter  # a refusal's traceback holds this frame: no cycle

    def _over_budget(self, wait_s: float) -> str:
        return (
            f"{self._in_work} reservations at work and {len(self._waiting)} waiting: about "
            f"{wait_s:.1f} s more to wait, over the {self._budget_s:g} s budget"
        )

    def _release(self, waiter: _Waiter) -> None:
        if not waiter.future.done():  # done: cancelled, its task has not yet left the line
            self._work_started()
            waiter.future.set_result(None)

    def _refuse(self, waiter: _Waiter, reason: str, retry_after_s: int | None = None) -> None:
        if not waiter.future.done():
            waiter.future.set_exception(self._overload(reason, retry_after_s))

    def _check_waiting(self, now_s: float) -> None:
        """Refuses waiters past their part of the budget or that cannot make it in time,
        and lets the oldest in while there is room."""
        waiting = self._waiting
        wait_s_max = self._wait_s_max
        while waiting and now_s - waiting[0].arrived_s >= wait_s_max:
            self._refuse(
                waiting.popleft(),
                f"waited {wait_s_max:g} s for the strategy: over the {self._budget_s:g} s budget",
            )
        rate = self._refresh_allowance(now_s)
        while waiting and self._in_work < self._allowance:
            self._release(waiting.popleft())
        if rate:
            while waiting:
                newest = waiting[-1]
                wait_s = self._entry_wait_s(len(waiting), rate)
                if now_s - newest.arrived_s + wait_s <= wait_s_max:
                    break
                waiting.pop()
                self._refuse(newest, self._over_budget(wait_s), self._retry_after_s(wait_s))
        while waiting and not self._in_work:
            # Nothing at work (the rate says less than one request fits the budget): let
            # the oldest through, or nothing would ever be measured again.
            self._release(waiting.popleft())

    def _schedule_wait_check(self) -> None:
        if self._wait_check is None:
            self._wait_check = asyncio.get_running_loop().call_later(
                min(WAIT_CHECK_S, self._wait_s_max / 4), self._on_wait_check
            )

    def _on_wait_check(self) -> None:
        self._wait_check = None
        if self._waiting:
            self._check_waiting(self._clock())
        if self._waiting:
            self._schedule_wait_check()

    @property
    def drain_rate_per_s(self) -> float:
        """Requests this process answers per second of busy time, as measured now."""
        return self._rate.per_s(self._clock())

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
            earlier = await tx.reservations_by_order([lookup.request.order_id for lookup in batch])
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
                answers.append(domain.replay_or_conflict(found, request))
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


def _whole_stock(request: ReserveRequest) -> bool:
    """Whether a refusal of ``request`` was decided on all of its SKUs' stock
    (docs/locations.md#allocation-policy): not split-free, no line pinned."""
    return request.split and all(line.location is None for line in request.lines)
