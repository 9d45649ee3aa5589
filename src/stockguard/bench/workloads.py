"""The two workloads ``stockguard bench`` runs, in-process against an open Engine.

* ``flash`` — docs/design.md#seed-002: one hot SKU, ``units`` in stock, ``requests`` buyers of
  one unit each, ``concurrency`` of them in flight at any time. Arrival order is the
  request number, so latency by arrival order draws the staircase of docs/design.md#seed-002.
* ``mixed`` — a shop on a busy day: ``mixed_requests`` orders over ``skus`` SKUs whose
  popularity follows a Zipf law,
  orders of 1-3 lines, and after each hold the buyer pays (confirm), cancels (release)
  or walks away (a 1-second hold that the expiry sweep ends), all interleaved.
* ``drop`` — a limited release raided by bots (docs/design.md#per-customer-caps):
  ``DROP_CUSTOMERS`` customers each fire ``DROP_ORDERS`` one-unit orders, interleaved,
  at ``units`` units capped at ``DROP_CAP`` per customer. Every customer must end with at
  most the cap; the counters tell how the units spread (``drop_customers_with_<n>``).

Only reservation requests are timed; ``requests`` counts them. Everything is bounded:
the number of requests, the concurrency and the wait for the last holds to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from stockguard import domain
from stockguard.domain.locations import LOCATIONS_MAX, Location
from stockguard.engine import Engine

WORKLOADS = ("flash", "mixed", "drop")
DEFAULT_WORKLOADS = ("flash", "mixed")
"""What ``bench`` runs unless told: ``drop`` is asked for by name (its one-transaction
strategies take minutes at 1,000 in flight)."""
FLASH_SKU = "FLASH-1"
DROP_SKU = "DROP-1"
DROP_CUSTOMERS = 200
DROP_ORDERS = 50
"""Orders each drop customer fires (a bot retrying with new order ids)."""
DROP_CAP = 2
SWEEP_EVERY_S = 0.25
WALK_AWAY_TTL_S = 1
ZIPF_S = 1.1
LINES_MAX = 3


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    requests: int = 10_000
    concurrency: int = 1_000
    units: int = 1_000
    """flash: units of the hot SKU; mixed: units of each SKU."""
    skus: int = 100
    """mixed only: how many SKUs."""
    seed: int = 2024
    mixed_requests: int = 2_000
    """mixed only: reservation requests (each also confirms, releases or expires)."""
    locations: int = 1
    """Locations each SKU's units are spread over (docs/locations.md): 1 is the default
    location alone, as a shop that never names one; N > 1 adds N - 1 locations and splits
    every SKU's units evenly, the default location keeping the remainder."""

    def __post_init__(self) -> None:
        assert 1 <= self.locations <= LOCATIONS_MAX
        assert 1 <= self.requests <= 10_000_000
        assert 1 <= self.concurrency <= 100_000
        assert 0 <= self.units <= domain.ON_HAND_MAX
        assert 1 <= self.skus <= 100_000
        assert 1 <= self.mixed_requests <= 10_000_000

    def requests_of(self, workload: str) -> int:
        if workload == "drop":
            return DROP_CUSTOMERS * DROP_ORDERS
        return self.mixed_requests if workload == "mixed" else self.requests


@dataclass
class Samples:
    """What one workload run observed, request by request, in arrival order."""

    latency_ms: list[float]
    outcome: list[str]
    """Per request: held, replayed, out-of-stock, overloaded, … (an error kind), or
    ``exception-<type>`` for an exception that is not a stockguard error (a bug)."""
    elapsed_s: float
    problems: list[str] = field(default_factory=list)
    """Answers that contradict the stock (e.g. refused while units were left)."""
    counters: dict[str, int] = field(default_factory=dict)
    """Events besides the timed requests, e.g. confirms the store was too busy to run."""


_REJECTIONS = frozenset(
    {"out-of-stock", "overloaded", "idempotency-conflict", "unknown-sku", "customer-limit"}
)


def is_rejection(outcome: str) -> bool:
    return outcome in _REJECTIONS


def location_codes(count: int) -> list[str]:
    """The locations a run with ``count`` locations stocks, in priority order."""
    return [domain.DEFAULT_LOCATION_CODE] + [f"loc-{n}" for n in range(2, count + 1)]


async def stock(engine: Engine, spec: WorkloadSpec, skus: Sequence[str], units: int) -> None:
    """``units`` of each SKU: at the default location, or split evenly over
    ``spec.locations`` locations (created on first use, priority in creation order)."""
    if spec.locations == 1:
        for sku in skus:
            await engine.set_on_hand(sku, units)
        return
    codes = location_codes(spec.locations)
    existing = {location.code for location in await engine.strategy.list_locations()}
    for priority, code in enumerate(codes):
        if code not in existing:
            await engine.strategy.create_location(Location(code, code, priority * 10))
    share = units // len(codes)
    for sku in skus:
        for code in codes:
            here = units - share * (len(codes) - 1) if code == codes[0] else share
            await engine.strategy.set_location_stock(sku, code, here)


async def _timed(
    engine: Engine,
    order_id: str,
    lines: list[tuple[str, int]],
    ttl_s: int,
    customer_id: str | None = None,
) -> tuple[float, str, domain.Reservation | None]:
    started = time.perf_counter()
    try:
        outcome = await engine.reserve(order_id, lines, ttl_s=ttl_s, customer_id=customer_id)
    except domain.StockguardError as error:
        return (time.perf_counter() - started) * 1000, error.kind, None
    except Exception as error:  # a bug shows up as an error in the table, not a crash
        return (time.perf_counter() - started) * 1000, f"exception-{type(error).__name__}", None
    kind = "held" if outcome.created else "replayed"
    return (time.perf_counter() - started) * 1000, kind, outcome.reservation


async def _drive(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Runs ``one(i)`` for i in arrival order with ``concurrency`` workers; wall seconds."""
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await one(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return time.perf_counter() - started


async def flash(engine: Engine, spec: WorkloadSpec, done: list[int]) -> Samples:
    await stock(engine, spec, [FLASH_SKU], spec.units)
    latency = [0.0] * spec.requests
    outcome = [""] * spec.requests

    async def one(n: int) -> None:
        latency[n], outcome[n], _ = await _timed(
            engine, f"flash-{n}", [(FLASH_SKU, 1)], domain.TTL_S_DEFAULT
        )
        done[0] += 1

    elapsed_s = await _drive(spec.requests, spec.concurrency, one)
    samples = Samples(latency, outcome, elapsed_s)
    held = outcome.count("held")
    clean = all(kind in ("held", "out-of-stock") for kind in outcome)
    if clean and held != min(spec.units, spec.requests):
        samples.problems.append(
            f"flash: {held} units held of {spec.units} for {spec.requests} buyers"
        )
    return samples


def zipf_weights(count: int, s: float = ZIPF_S) -> list[float]:
    return [1 / (rank**s) for rank in range(1, count + 1)]


async def mixed(engine: Engine, spec: WorkloadSpec, done: list[int]) -> Samples:
    skus = [f"MIX-{n:05d}" for n in range(spec.skus)]
    await stock(engine, spec, skus, spec.units)
    rng = random.Random(spec.seed)
    weights = zipf_weights(len(skus))
    orders: list[tuple[list[tuple[str, int]], str]] = []
    for _ in range(spec.mixed_requests):
        wanted = min(rng.randint(1, LINES_MAX), len(skus))
        chosen: set[str] = set()
        while len(chosen) < wanted:
            chosen.add(rng.choices(skus, weights)[0])
        lines = [(sku, rng.randint(1, 2)) for sku in sorted(chosen)]
        orders.append((lines, rng.choices(("confirm", "release", "walk"), (5, 3, 2))[0]))
    latency = [0.0] * spec.mixed_requests
    outcome = [""] * spec.mixed_requests
    settle_errors: Counter[str] = Counter()
    stop = asyncio.Event()

    async def sweeper() -> None:
        while not stop.is_set():
            with contextlib.suppress(domain.StockguardError):
                await engine.expire_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_EVERY_S)

    async def one(n: int) -> None:
        lines, then = orders[n]
        ttl_s = WALK_AWAY_TTL_S if then == "walk" else domain.TTL_S_DEFAULT
        latency[n], outcome[n], hold = await _timed(engine, f"mixed-{n}", lines, ttl_s)
        done[0] += 1
        if hold is None or then == "walk":
            return
        try:
            if then == "confirm":
                await engine.confirm(hold.id)
            else:
                await engine.release(hold.id)
        except domain.StockguardError as error:
            # Busy (no pool connection in time) is an answer, not a broken invariant: the
            # hold stays and the audit still checks every total.
            settle_errors[f"{then}_{error.kind}"] += 1

    sweeping = asyncio.create_task(sweeper())
    try:
        elapsed_s = await _drive(spec.mixed_requests, spec.concurrency, one)
    finally:
        stop.set()
        await sweeping
    # Walk-aways end by expiry: wait out their TTL once, then one last sweep.
    await asyncio.sleep(WALK_AWAY_TTL_S + 0.1)
    await engine.expire_due()
    return Samples(latency, outcome, elapsed_s, counters=dict(settle_errors))


async def drop(engine: Engine, spec: WorkloadSpec, done: list[int]) -> Samples:
    """Bots against a per-customer cap: request n is customer n mod DROP_CUSTOMERS's
    (n // DROP_CUSTOMERS)-th order, so every customer's orders race everyone else's."""
    await stock(engine, spec, [DROP_SKU], spec.units)
    await engine.set_policy(DROP_SKU, domain.Policy(customer_max=DROP_CAP))
    count = DROP_CUSTOMERS * DROP_ORDERS
    latency = [0.0] * count
    outcome = [""] * count
    got: Counter[str] = Counter()

    async def one(n: int) -> None:
        customer = f"bot-{n % DROP_CUSTOMERS:03d}"
        latency[n], outcome[n], held = await _timed(
            engine, f"drop-{n}", [(DROP_SKU, 1)], domain.TTL_S_DEFAULT, customer
        )
        if held is not None:
            got[customer] += 1
        done[0] += 1

    elapsed_s = await _drive(count, spec.concurrency, one)
    samples = Samples(latency, outcome, elapsed_s)
    spread = Counter(got.get(f"bot-{c:03d}", 0) for c in range(DROP_CUSTOMERS))
    samples.counters = {f"drop_customers_with_{units}": n for units, n in sorted(spread.items())}
    samples.counters["drop_units_held"] = sum(got.values())
    samples.counters["drop_most_one_customer_got"] = max(got.values(), default=0)
    over = sorted(customer for customer, units in got.items() if units > DROP_CAP)
    if over:
        samples.problems.append(f"drop: {len(over)} customers got more than {DROP_CAP}: {over[:5]}")
    clean = all(kind in ("held", "customer-limit", "out-of-stock") for kind in outcome)
    expected = min(spec.units, DROP_CAP * DROP_CUSTOMERS)
    if clean and sum(got.values()) != expected:
        samples.problems.append(
            f"drop: {sum(got.values())} units held, {expected} expected "
            f"({DROP_CUSTOMERS} customers x {DROP_CAP} of {spec.units})"
        )
    return samples


RUNNERS = {"flash": flash, "mixed": mixed, "drop": drop}
