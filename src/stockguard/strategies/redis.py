"""Stock counters and holds in Redis, the SQL store written behind (docs/design.md#redis).

Every hold, confirm, release, expiry and admin edit is ONE Lua script on Redis: it checks
everything, writes, and appends its event to a stream in the same atomic step, so there
are no WATCH retries and no lock (docs/design.md#redis). The answer is sent when the script returns;
a persister task copies the stream into the SQL tables in batches, exactly once, in
order (``stores/redis/persister.py``). The SQL tables therefore lag by the persister's
lag; ``settle()`` waits it out, and reads that must be current (stock, reservations)
are answered from Redis.

Cold start: ``start()`` loads Redis from SQL when this keyspace holds nothing (no load
marker) — the state a fresh install and a Redis that lost its data share. Once this
process has seen the keyspace loaded it never loads again on its own: if Redis empties
while running (flushed, restarted without persistence, fenced by the persister because
it fell behind SQL), every script refuses with 503 until ``stockguard reconcile`` loads
it, so a human sees the loss instead of a silent reload (see docs/durability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from stockguard import domain
from stockguard.domain import (
    Line,
    Product,
    ProductSpec,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    Status,
    StockLevel,
    Variant,
)
from stockguard.domain.locations import Location
from stockguard.stores.redis.client import CONNECTIONS_MAX, connect, unavailable_on_error
from stockguard.stores.redis.codec import StreamId
from stockguard.stores.redis.events import product_payload
from stockguard.stores.redis.holds import (
    ENDED_RETENTION_S_DEFAULT,
    KnownOrder,
    RedisHolds,
    replay_or_conflict,
)
from stockguard.stores.redis.keys import KeyLayout, default_prefix
from stockguard.stores.redis.loader import (
    LoadingElsewhere,
    customer_counts,
    ensure_loaded,
    write_locations,
)
from stockguard.stores.redis.persister import Persister
from stockguard.stores.redis.scripts import load_all
from stockguard.stores.redis.sql_apply import read_offset
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.base import Strategy

log = logging.getLogger("stockguard.redis")

SETTLE_S_MAX = 30.0
"""Longest ``settle()`` waits for the persister before answering StoreUnavailable."""
SETTLE_POLL_S = 0.05
CLOSE_SETTLE_S = 5.0
"""``close()`` lets the persister catch up this long, so a clean stop leaves SQL current."""
CLOSE_TASK_S = 5.0
"""How long ``close()`` waits for the background task to stop once cancelled."""
AUTOLOAD_RETRY_S = 1.0


class RedisStrategy(Strategy):
    store: SqlStore  # the persister, reconcile and loading read and write SQL tables
    memory = False
    name = "redis"
    requires = ("redis",)
    write_behind = True
    burst_in_flight = 1_000  # a burst of script calls leaves in a few pipelines

    def __init__(
        self,
        store: SqlStore,
        *,
        redis_url: str,
        key_prefix: str | None = None,
        persister: bool = True,
        autoload: bool = True,
        ended_retention_s: int = ENDED_RETENTION_S_DEFAULT,
        connections_max: int = CONNECTIONS_MAX,
        **options: Any,
    ) -> None:
        super().__init__(store, **options)
        self.keys = KeyLayout(key_prefix or default_prefix())
        self.clients = connect(redis_url, connections_max)
        self.holds = RedisHolds(self.clients.commands, self.keys, ended_retention_s)
        self.persister = Persister(self.clients, store, self.keys) if persister else None
        self.autoload = autoload
        self._seen_loaded = False
        self._background: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Loads the scripts, loads an empty keyspace from SQL, starts the persister.

        Redis being down here does not stop the process: requests answer 503 and the
        background task keeps trying, so the service recovers without a restart.
        """
        try:
            async with unavailable_on_error("start"):
                await load_all(self.clients.commands)
            await self._autoload()
            await self.refresh_locations()
        except LoadingElsewhere as error:
            log.info("Redis is not ready (%s); reservations answer 503 until it is", error)
        except domain.StoreUnavailable as error:
            log.warning("Redis is not ready (%s); reservations answer 503 until it is", error)
        self._background = asyncio.create_task(
            self._keep(), name=f"stockguard-redis-{self.keys.prefix}"
        )

    async def _autoload(self) -> None:
        if self.autoload and not self._seen_loaded:
            report = await ensure_loaded(self.clients, self.store, self.keys)
            if report is not None and report.previous_epoch is None:
                log.info("first start of Redis keyspace %s: loaded from SQL", self.keys.prefix)
            elif report is not None:
                log.warning(
                    "Redis keyspace %s was empty (restart without persistence, flush or "
                    "fence) and was reloaded from SQL: %s",
                    self.keys.prefix,
                    report,
                )
        self._seen_loaded = True

    async def _keep(self) -> None:
        while not self._seen_loaded:
            try:
                await self._autoload()
            except domain.StoreUnavailable:
                await asyncio.sleep(AUTOLOAD_RETRY_S)
        if self.persister is not None:
            await self.persister.run()

    async def close(self) -> None:
        if self._background is not None:
            if self.persister is not None and not self._background.done():
                with contextlib.suppress(domain.StoreUnavailable, TimeoutError):
                    await asyncio.wait_for(self.settle(), CLOSE_SETTLE_S)
            if self.persister is not None:
                self.persister.stop()
            self._background.cancel()
            done, _ = await asyncio.wait({self._background}, timeout=CLOSE_TASK_S)
            if not done:
                log.warning("the Redis background task of %s did not stop", self.keys.prefix)
            self._background = None
        await self.clients.close()

    async def ping(self) -> None:
        async with unavailable_on_error("ping"):
            await self.clients.commands.ping()

    async def settle(self, until: StreamId | None = None) -> None:
        """Waits until the SQL tables hold every event up to ``until`` (default: now)."""
        target = until or await self.holds.newest_event()
        if target is None:
            return
        deadline = time.monotonic() + SETTLE_S_MAX
        while True:
            if self.persister is not None and await self.persister.wait_persisted(
                target, SETTLE_POLL_S
            ):
                return
            async with self.store.transaction(read_only=True) as tx:
                offset = await read_offset(tx, self.keys.events)
            if offset is not None and offset.last_id >= target:
                return
            if time.monotonic() > deadline:
                raise domain.StoreUnavailable(
                    f"the persister is more than {SETTLE_S_MAX:.0f}s behind", retry_after_s=5
                )
            if self.persister is None:
                await asyncio.sleep(SETTLE_POLL_S)

    # ------------------------------------------------------------------ holds

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        outcome = await self.holds.reserve(
            request, str(uuid.uuid4()), self.store.allocation_policy.value
        )
        if isinstance(outcome, KnownOrder):
            return replay_or_conflict(await self._from_sql(outcome.reservation_id), request)
        return outcome

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.CONFIRMED)

    async def release(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.RELEASED)

    async def _end(self, reservation_id: str, target: Status) -> Reservation:
        ended = await self.holds.end(reservation_id, target)
        if ended is not None:
            return ended
        # Redis let it go: it ended longer ago than the retention, so SQL's row is final.
        found = await self.store.get_reservation(reservation_id)
        if found.status is Status.HELD:
            raise domain.StoreUnavailable(
                f"reservation {reservation_id} is held in SQL but unknown to Redis: "
                "run `stockguard reconcile`"
            )
        domain.check_transition(found, target, found.expires_at_ms)
        return found

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation:
        extended = await self.holds.extend(reservation_id, ttl_s)
        if extended is not None:
            return extended
        return domain.extension(await self._ended_in_sql(reservation_id), ttl_s, 0).result()

    async def release_part(self, reservation_id: str, lines: Sequence[Line]) -> Reservation:
        released = await self.holds.release_part(reservation_id, lines)
        if released is not None:
            return released
        return domain.release_part(await self._ended_in_sql(reservation_id), lines, 0).result()

    async def _ended_in_sql(self, reservation_id: str) -> Reservation:
        """A reservation Redis let go of: it ended longer ago than the retention, so SQL's
        row is final (a held one there means the two disagree)."""
        found = await self.store.get_reservation(reservation_id)
        if found.status is Status.HELD:
            raise domain.StoreUnavailable(
                f"reservation {reservation_id} is held in SQL but unknown to Redis: "
                "run `stockguard reconcile`"
            )
        return found

    async def _from_sql(self, reservation_id: str) -> Reservation:
        try:
            return await self.store.get_reservation(reservation_id)
        except domain.ReservationNotFound:
            await self.settle()  # ended and dropped from Redis before the persister caught up
            return await self.store.get_reservation(reservation_id)

    async def expire_due(self) -> int:
        return await self.holds.expire_due()

    async def get_reservation(self, reservation_id: str) -> Reservation:
        found = await self.holds.get(reservation_id)
        return found if found is not None else await self.store.get_reservation(reservation_id)

    # ------------------------------------------------------------------ stock

    async def stock(self, skus: Sequence[str]) -> list[StockLevel]:
        return await self.holds.levels(skus)

    async def set_on_hand(self, sku: str, on_hand: int, expected_on_hand: int | None) -> StockLevel:
        return await self.holds.set_on_hand(sku, on_hand, expected_on_hand)

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        return await self.holds.adjust(sku, delta, reason)

    async def set_policy(
        self, sku: str, policy: domain.Policy, expected: domain.Policy | None
    ) -> domain.Policy:
        """Redis (reserve.lua decides with its safety stock, cap and backorder allowance)
        and SQL, each compare-and-set against the policy SQL showed (the engine settled
        first).

        The order follows the backorder allowance, because SQL's I1 CHECK
        (``reserved <= on_hand + backorder_max``) judges every batch the persister writes
        (docs/design.md#backorders): SQL's allowance must never be below one Redis sold
        on. A raise goes to SQL first, then Redis (put back in SQL if Redis refuses); a
        cut to Redis first, where the script refuses it below what is held, then SQL once
        the persister has caught up with every hold decided on the larger allowance.
        Anything else, Redis first as before.

        A cap newly set starts from the customers' counts in SQL (held + confirmed) as
        of this moment: a hold of this SKU in the few milliseconds between that read and
        the script is not counted (docs/design.md#per-customer-caps: set caps before the
        drop, not during it)."""
        current = await self.store.get_policy(sku)
        domain.check_policy_change(sku, current, expected)
        counts: dict[str, int] = {}
        if policy.customer_max is not None and current.customer_max is None:
            counts = await customer_counts(self.store, sku)
        if policy.backorder_max > current.backorder_max:
            written = await self.store.set_policy(sku, policy, current)
            try:
                await self.holds.set_policy(sku, policy, current, counts)
            except domain.StockguardError as refused:
                with contextlib.suppress(domain.StockguardError):
                    await self.store.set_policy(sku, current, policy)
                if isinstance(refused, domain.PolicyChanged):
                    raise domain.PolicyChanged(sku, await self.store.get_policy(sku)) from None
                raise
            return written
        try:
            await self.holds.set_policy(sku, policy, current, counts)
        except domain.PolicyChanged:
            raise domain.PolicyChanged(sku, await self.store.get_policy(sku)) from None
        if policy.backorder_max < current.backorder_max:
            await self.settle()
        return await self.store.set_policy(sku, policy, current)

    # ------------------------------------------------------------------ locations

    async def refresh_locations(self) -> None:
        """Copies SQL's locations into Redis (``KeyLayout.locations``), replacing them
        whole: reserve.lua allocates over the active ones, in priority order. Called after
        every change made through this strategy, and at start (a keyspace loaded before
        locations existed gets them)."""
        async with self.store.transaction(read_only=True) as tx:
            places = await tx.locations()
        async with unavailable_on_error("locations"):
            await write_locations(self.clients, self.keys, places)

    async def create_location(self, location: Location) -> Location:
        created = await self.store.create_location(location)
        await self.refresh_locations()
        return created

    async def update_location(
        self,
        code: str,
        *,
        name: str | None = None,
        priority: int | None = None,
        active: bool | None = None,
    ) -> Location:
        """SQL first, then Redis: a deactivated location stops selling in Redis once this
        returns (docs/locations.md#deactivating); its holds settle there as before."""
        updated = await self.store.update_location(
            code, name=name, priority=priority, active=active
        )
        await self.refresh_locations()
        return updated

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None = None,
        safety_stock: int | None = None,
        backorder_max: int | None = None,
    ) -> StockLevel:
        """A SKU's level at one location, answered as ``stock`` shows the SKU.

        At another location: one script (``set_location.lua``), compare-and-set on the
        Redis level, atomically with the holds that draw from it; the persister writes SQL
        (the level, its policy figures and the ``set`` movement at that location). At the
        default location the level is the SKU's stock hash: ``set_policy`` for safety
        stock and allowance (its careful SQL/Redis order), then ``set_on_hand``."""
        domain.validate_on_hand(on_hand)
        if location == domain.DEFAULT_LOCATION_CODE:
            if safety_stock is not None or backorder_max is not None:
                current = await self.store.get_policy(sku)
                wanted = dataclasses.replace(
                    current,
                    safety_stock=current.safety_stock if safety_stock is None else safety_stock,
                    backorder_max=current.backorder_max if backorder_max is None else backorder_max,
                )
                domain.validate_policy(wanted)
                if wanted != current:
                    await self.set_policy(sku, wanted, current)
            await self.holds.set_on_hand(sku, on_hand, expected_on_hand)
        else:
            domain.validate_policy(domain.Policy(safety_stock or 0, backorder_max or 0, None, None))
            await self.holds.set_location_stock(
                sku, location, on_hand, expected_on_hand, safety_stock, backorder_max
            )
        (level,) = await self.holds.levels([sku])
        return level

    async def create_product(self, spec: ProductSpec) -> Product:
        """Creates the SKUs in Redis (all or none), then waits until SQL has the product:
        products are read from SQL, and an admin expects to see what they just made."""
        product_id = str(uuid.uuid4())
        event = await self.holds.create_product(
            product_payload(product_id, spec), [(v.sku, v.on_hand) for v in spec.variants]
        )
        try:
            await self.settle(until=event)
        except domain.StoreUnavailable as error:
            log.warning("product %s is in Redis, not yet in SQL: %s", product_id, error)
        return Product(
            product_id,
            spec.name,
            spec.options,
            tuple(
                Variant(v.sku, v.options, StockLevel(v.sku, v.on_hand, 0, 0)) for v in spec.variants
            ),
        )
