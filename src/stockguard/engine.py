"""The facade every face (library, HTTP service, CLI, benchmark) goes through.

It validates input with the pure domain rules before anything is written, hands the
request to the chosen strategy, and counts what happened. It holds no SQL and makes no
decision about concurrency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from stockguard import domain, metrics, strategies
from stockguard.admission import Admission, AdmissionLimits
from stockguard.domain import (
    Line,
    Movement,
    Product,
    Reservation,
    ReserveOutcome,
    Status,
    StockLevel,
    VariantSpec,
)
from stockguard.domain.events import EVENT_TYPES_ALL, EventType, StoredEvent
from stockguard.domain.kits import Kit, expand, kit_available, validate_kit
from stockguard.domain.locations import (
    ALLOCATION_POLICY_DEFAULT,
    AllocationPolicy,
    Location,
    validate_location,
)
from stockguard.stores.contract import Store
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql.audit import AuditReport, audit
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.base import Strategy

DEFAULT_DATABASE_URL = "sqlite:///./stockguard.db"


class Engine:
    def __init__(
        self, store: Store, strategy: Strategy, admission: AdmissionLimits | None = None
    ) -> None:
        self.store = store
        self.strategy = strategy
        limits = admission or AdmissionLimits()
        burst = strategy.burst_in_flight
        if limits.queue_wait_s_max and burst is not None:
            limits = dataclasses.replace(
                limits,
                cold_in_flight_max=max(limits.cold_in_flight_max, burst),
                in_flight_floor=max(limits.in_flight_floor, burst),
            )
        self.admission = Admission(
            store,
            strategy.reserve,
            strategy.stock,
            limits,
            reservations_in_sql=not strategy.write_behind,
        )
        """Caps and the sold-out fast path, in front of the strategy (docs/design.md#admission)."""
        self.watched: frozenset[str] = frozenset()
        """SKUs counted one by one for the admin page's drop view (``service/watch.py`` sets
        it). Empty, the usual case, a reservation pays one truth test for it."""
        self.kits_seen: dict[str, Kit] = {}
        """Every kit this process has met (definitions never change: docs/design.md#kits).
        Empty, the usual case, a reservation pays one truth test for it."""

    @classmethod
    async def open(
        cls,
        url: str = DEFAULT_DATABASE_URL,
        strategy: str = strategies.DEFAULT_STRATEGY,
        *,
        migrate: bool = True,
        pool_size: int | None = None,
        redis_url: str | None = None,
        admission: AdmissionLimits | None = None,
        events: frozenset[EventType] = EVENT_TYPES_ALL,
        allocation_policy: AllocationPolicy | str = ALLOCATION_POLICY_DEFAULT,
        **strategy_options: Any,
    ) -> Engine:
        """Connects, migrates the schema (unless told not to) and starts the strategy.

        ``memory://`` keeps everything in this process (``stores/memory.py``) for the
        strategies that need nothing but the store contract (``MEMORY_STRATEGIES``).
        ``allocation_policy``: how a line of a SKU stocked at several locations draws when
        its request names no policy (docs/locations.md#allocation-policy)."""
        policy = AllocationPolicy(allocation_policy)  # ValueError before connecting
        store: Store
        if url.startswith("memory:"):  # in process, for tests and trying it out
            store = MemoryStore.open(url)
        else:
            store = SqlStore.open(url, **({} if pool_size is None else {"pool_size": pool_size}))
        store.recorded_events = events  # docs/events.md: written with each change
        store.allocation_policy = policy
        try:
            if migrate:
                await store.migrate()
            if "redis" in strategies.strategy_class(strategy).requires:
                if redis_url is None:
                    raise ValueError(f"strategy {strategy!r} needs a Redis URL")
                strategy_options["redis_url"] = redis_url
            chosen = strategies.create(strategy, store, **strategy_options)
            try:
                await chosen.start()
            except BaseException:
                # start() may have got halfway (writer tasks, a Redis pool): stop what it
                # started, then report why it could not start.
                with contextlib.suppress(Exception):
                    await chosen.close()
                raise
        except BaseException:
            await store.close()
            raise
        return cls(store, chosen, admission)

    async def close(self) -> None:
        try:
            await self.strategy.close()
        finally:
            await self.store.close()

    async def __aenter__(self) -> Engine:
        return self

    # ------------------------------------------------------------------ operations

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    @property
    def events(self) -> Mapping[str, int]:
        """The strategy's event counters (retries, batches…), live: exported as metrics."""
        return self.strategy.counters

    def counters(self) -> dict[str, int]:
        """Every counter of admission, strategy and store at this moment, for reports."""
        return (
            dict(self.admission.counters) | dict(self.strategy.counters) | dict(self.store.counters)
        )

    async def ping(self) -> None:
        """Returns once every store this engine needs answers (one clock read of the SQL
        database, and the strategy's own, e.g. Redis); raises StoreUnavailable if one
        cannot."""
        async with self.store.transaction(read_only=True) as tx:
            await tx.now_ms()
        await self.strategy.ping()

    async def settle(self) -> None:
        """Waits until every answer given so far is in the SQL tables (write-behind
        strategies persist later); immediate for the others."""
        await self.strategy.settle()

    async def audit(self) -> AuditReport:
        """Checks I1-I4 on the tables once they hold every answer given so far
        (docs/design.md#invariants)."""
        await self.settle()
        return await audit(self.store)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ reservations

    async def reserve(
        self,
        order_id: str,
        lines: Sequence[Line] | Sequence[tuple[str, int]],
        ttl_s: int = domain.TTL_S_DEFAULT,
        customer_id: str | None = None,
        allocation_policy: str | None = None,
        split: bool = True,
    ) -> ReserveOutcome:
        """Holds every line or none; the same order_id and lines replay the same hold.

        For a SKU stocked at several locations, ``allocation_policy`` (``priority`` or
        ``most_available``; None: the shop's) and ``split`` choose where a line draws from,
        and ``Line(sku, quantity, location=code)`` pins a line to one location
        (docs/locations.md#allocation-policy); the held lines tell their ``allocations``.

        A kit line holds its components (``domain.kits.expand``). A kit this process has
        not met yet reaches the strategy as an unknown SKU (or, replayed, as a conflict
        with its stored component lines): only then are the kits table read and the
        request expanded and run again, so a shop without kits pays nothing for them."""
        request = domain.validate_reserve(
            order_id, lines, ttl_s, customer_id, allocation_policy, split
        )
        if self.kits_seen and not self.kits_seen.keys().isdisjoint(request.skus):
            request = expand(request, self.kits_seen)
        if self.watched and not self.watched.isdisjoint(request.skus):
            return await self._reserve_or_expand(request)
        # The common path written out, one coroutine deep: a flash sale refuses thousands
        # of requests a second, and every frame an exception unwinds costs. Measured
        # (docs/benchmarks.md, "Issue 15's features off"): with one more layer here the
        # in-process flash figure was 88 % of the code's before kits and policies, 94 %
        # without it.
        try:
            outcome = await self.admission.reserve(request)
        except (domain.UnknownSku, domain.IdempotencyConflict) as error:
            expanded = await self._expand_new_kits(request)
            if expanded is None:
                metrics.reservation_outcome(error.kind).inc()
                del error  # as below: no frame -> traceback -> frame cycle per refusal
                raise
            return await self._reserve(expanded)
        except domain.StockguardError as error:
            metrics.reservation_outcome(error.kind).inc()
            # The traceback holds this frame; unbinding the error avoids a frame -> error ->
            # traceback -> frame cycle per refusal, which in a flash sale (thousands of
            # refusals a second) makes the cyclic GC pause the event loop.
            del error
            raise
        metrics.reservation_outcome("held" if outcome.created else "replayed").inc()
        return outcome

    async def _reserve_or_expand(self, request: domain.ReserveRequest) -> ReserveOutcome:
        """``reserve`` past validation, the slow way: a watched SKU, or kits met late."""
        try:
            return await self._reserve(request)
        except (domain.UnknownSku, domain.IdempotencyConflict):
            expanded = await self._expand_new_kits(request)
            if expanded is None:
                raise
        return await self._reserve(expanded)

    async def _expand_new_kits(
        self, request: domain.ReserveRequest
    ) -> domain.ReserveRequest | None:
        """``request`` expanded, if it names kits this process had not met; else None."""
        unseen = [sku for sku in request.skus if sku not in self.kits_seen]
        found = await self.store.kits(unseen) if unseen else {}
        if not found:
            return None
        self.kits_seen.update(found)
        return expand(request, self.kits_seen)

    async def _reserve(self, request: domain.ReserveRequest) -> ReserveOutcome:
        if self.watched and not self.watched.isdisjoint(request.skus):
            return await self._reserve_watched(request)
        try:
            outcome = await self.admission.reserve(request)
        except domain.StockguardError as error:
            metrics.reservation_outcome(error.kind).inc()
            # The traceback holds this frame; unbinding the error avoids a frame -> error ->
            # traceback -> frame cycle per refusal, which in a flash sale (thousands of
            # refusals a second) makes the cyclic GC pause the event loop.
            del error
            raise
        metrics.reservation_outcome("held" if outcome.created else "replayed").inc()
        return outcome

    async def _reserve_watched(self, request: domain.ReserveRequest) -> ReserveOutcome:
        """``reserve`` for a request naming a watched SKU: the same answer and counts, plus
        its outcome and time per watched SKU (``metrics.sku_reserved``)."""
        started_s = time.perf_counter()
        outcome_label = "failed"  # an exception no domain kind names (a bug, a driver)
        try:
            outcome = await self.admission.reserve(request)
        except domain.StockguardError as error:
            outcome_label = error.kind
            metrics.reservation_outcome(error.kind).inc()
            del error  # as in reserve: no frame -> traceback -> frame cycle per refusal
            raise
        else:
            outcome_label = "held" if outcome.created else "replayed"
            metrics.reservation_outcome(outcome_label).inc()
            return outcome
        finally:
            duration_s = time.perf_counter() - started_s
            for sku in request.skus:
                if sku in self.watched:
                    metrics.sku_reserved(sku, outcome_label, duration_s)

    async def confirm(self, reservation_id: str) -> Reservation:
        """Paid: the held units leave stock for good. Replay-safe; refused after expiry."""
        try:
            result = await self.strategy.confirm(domain.validate_reservation_id(reservation_id))
        except domain.ReservationExpired:
            self.admission.stock_may_have_returned()  # the hold ended as expired: stock is back
            raise
        metrics.TRANSITIONS.labels(status=result.status.value).inc()
        return result

    async def release(
        self,
        reservation_id: str,
        items: Sequence[Line] | Sequence[tuple[str, int]] | None = None,
    ) -> Reservation:
        """Not paid: the held units become available again. Replay-safe.

        With ``items``, only those units are given back and the rest stays held (a
        partial release, docs/design.md#partial-release; NOT replay-safe: each call gives
        back again); giving back every unit left releases the hold.
        """
        rid = domain.validate_reservation_id(reservation_id)
        if items is None:
            result = await self.strategy.release(rid)
            self.admission.stock_may_have_returned(line.sku for line in result.lines)
            metrics.TRANSITIONS.labels(status=result.status.value).inc()
            return result
        lines = domain.validate_lines(items)
        result = await self.strategy.release_part(rid, lines)
        self.admission.stock_may_have_returned(line.sku for line in lines)
        if result.status is not Status.HELD:
            metrics.TRANSITIONS.labels(status=result.status.value).inc()
        return result

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation:
        """More time for a held reservation: expires ``ttl_s`` from now by the store's
        clock, never earlier than it did, never past ``created_at`` +
        ``domain.HOLD_LIFETIME_S_MAX`` (clamped). Refused once it is past its expiry
        (``ReservationExpired``, and it ends as expired) or ended (``InvalidState``)."""
        rid = domain.validate_reservation_id(reservation_id)
        ttl = domain.validate_ttl(ttl_s)
        try:
            return await self.strategy.extend(rid, ttl)
        except domain.ReservationExpired:
            self.admission.stock_may_have_returned()  # it may have ended as expired just now
            raise

    async def expire_due(self) -> int:
        """Ends every held reservation whose expiry has passed by the store's clock."""
        ended = await self.strategy.expire_due()
        if ended:
            self.admission.stock_may_have_returned()
        metrics.EXPIRED.inc(ended)
        return ended

    async def get_reservation(self, reservation_id: str) -> Reservation:
        return await self.strategy.get_reservation(domain.validate_reservation_id(reservation_id))

    async def list_reservations(
        self,
        *,
        status: Status | None = None,
        sku: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        limit: int = domain.PAGE_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> tuple[list[Reservation], str | None]:
        return await self.store.list_reservations(
            status=status,
            sku=sku,
            order_id=order_id,
            customer_id=customer_id,
            limit=domain.validate_page_limit(limit),
            cursor=cursor,
        )

    # ------------------------------------------------------------------ stock

    async def stock(self, skus: Sequence[str]) -> list[StockLevel]:
        """Current levels of the SKUs that exist, in SKU order."""
        checked = [domain.validate_sku(sku) for sku in skus]
        return await self.strategy.stock(checked)

    async def stock_of(self, sku: str) -> StockLevel:
        found = await self.stock([sku])
        if not found:
            raise domain.UnknownSku([sku])
        return found[0]

    async def list_stock(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[StockLevel], str | None]:
        levels, next_cursor = await self.store.list_stock(
            prefix=prefix, limit=domain.validate_page_limit(limit), cursor=cursor
        )
        live = {level.sku: level for level in await self.strategy.stock([lv.sku for lv in levels])}
        return [live.get(level.sku, level) for level in levels], next_cursor

    async def set_on_hand(
        self, sku: str, on_hand: int, expected_on_hand: int | None = None
    ) -> StockLevel:
        """Sets on_hand if still ``expected_on_hand``, when given (docs/design.md#seed-001)."""
        domain.validate_sku(sku)
        domain.validate_on_hand(on_hand)
        if expected_on_hand is not None:
            domain.validate_on_hand(expected_on_hand, "expected_on_hand")
        if sku in self.kits_seen or await self.store.kits([sku]):
            raise domain.DuplicateSku([sku])  # a kit has no stock of its own
        try:
            return await self.strategy.set_on_hand(sku, on_hand, expected_on_hand)
        finally:
            self.admission.stock_may_have_returned([sku])

    # ------------------------------------------------------------------ locations

    async def list_locations(self) -> list[Location]:
        """Every location in priority order, ``default`` included (docs/locations.md)."""
        return await self.strategy.list_locations()

    async def create_location(
        self, code: str, name: str, priority: int = 0, active: bool = True
    ) -> Location:
        """A new location (``DuplicateLocation`` if the code is taken)."""
        location = validate_location(code, name, priority, active)
        return await self.strategy.create_location(location)

    async def update_location(
        self,
        code: str,
        *,
        name: str | None = None,
        priority: int | None = None,
        active: bool | None = None,
    ) -> Location:
        """A location's name, priority or active flag (None: unchanged). Deactivating
        stops its selling and keeps its holds (docs/locations.md#deactivating); the
        default location cannot be deactivated (``InvalidInput``)."""
        domain.validate_sku(code, "code")
        # Each given field checked as a location's (the store checks the merged one again).
        validate_location(
            code,
            "-" if name is None else name,
            0 if priority is None else priority,
            True if active is None else active,
        )
        try:
            return await self.strategy.update_location(
                code, name=name, priority=priority, active=active
            )
        finally:
            if active is not None:
                self.admission.stock_may_have_returned()  # its stock joins or leaves totals

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None = None,
        safety_stock: int | None = None,
        backorder_max: int | None = None,
    ) -> StockLevel:
        """Sets one location's on_hand of ``sku`` if still ``expected_on_hand``, when
        given (the compare-and-set of ``set_on_hand``, on that level), and that location's
        ``safety_stock`` and ``backorder_max`` when given. Answers the SKU as shown: totals
        and the level at every location."""
        domain.validate_sku(sku)
        domain.validate_sku(location, "location")
        domain.validate_on_hand(on_hand)
        if expected_on_hand is not None:
            domain.validate_on_hand(expected_on_hand, "expected_on_hand")
        if safety_stock is not None:
            domain.validate_on_hand(safety_stock, "safety_stock")
        if backorder_max is not None:
            domain.validate_on_hand(backorder_max, "backorder_max")
        if sku in self.kits_seen or await self.store.kits([sku]):
            raise domain.DuplicateSku([sku])  # a kit has no stock of its own
        try:
            return await self.strategy.set_location_stock(
                sku, location, on_hand, expected_on_hand, safety_stock, backorder_max
            )
        except (domain.StockChanged, domain.BelowReserved) as refused:
            # Decided on the one level; the answer shows the SKU as stock reads do (totals
            # and every location), and the detail names the location.
            shown = await self.strategy.stock([sku])
            if shown:
                refused.current = shown[0]
            detail = str(refused)
            if detail.startswith(f"{sku}: "):
                refused.args = (f"{sku} at {location}: {detail[len(sku) + 2 :]}",)
            raise
        finally:
            self.admission.stock_may_have_returned([sku])

    async def get_policy(self, sku: str) -> domain.Policy:
        """The SKU's stock policy (docs/design.md#stock-policy)."""
        domain.validate_sku(sku)
        await self.strategy.settle()  # a SKU created a moment ago under write-behind
        return await self.strategy.get_policy(sku)

    async def set_policy(
        self, sku: str, policy: domain.Policy, expected: domain.Policy | None = None
    ) -> domain.Policy:
        """Replaces the policy if it is still ``expected``, when given; through the
        strategy, so a strategy that keeps stock elsewhere (Redis) decides on it too."""
        domain.validate_sku(sku)
        domain.validate_policy(policy)
        await self.strategy.settle()
        try:
            return await self.strategy.set_policy(sku, policy, expected)
        finally:
            self.admission.stock_may_have_returned([sku])  # safety stock moves available

    async def set_low_stock_threshold(self, sku: str, threshold: int | None) -> None:
        """``stock.low`` fires when available falls to or below ``threshold`` (None: off).

        Kept in the SQL row whatever the strategy (the outbox is judged there): under a
        write-behind strategy the persister first catches up, so a SKU created a moment
        ago has its row."""
        domain.validate_sku(sku)
        if threshold is not None:
            domain.validate_on_hand(threshold, "low_stock_threshold")
        await self.strategy.settle()
        await self.store.set_low_stock_threshold(sku, threshold)

    async def low_stock_threshold(self, sku: str) -> int | None:
        domain.validate_sku(sku)
        await self.strategy.settle()
        return await self.store.low_stock_threshold(sku)

    async def sequence_events(self, limit: int = 1_000) -> int:
        """Gives committed outbox rows their public ids (the relay's job; docs/events.md)."""
        return await self.store.sequence_events(limit)

    async def events_after(
        self, after: int, limit: int = 100, types: frozenset[EventType] | None = None
    ) -> list[StoredEvent]:
        """Numbered events after id ``after``, oldest first (the pull feed's read)."""
        if not 1 <= limit <= domain.PAGE_LIMIT_MAX:
            raise domain.InvalidInput("limit", f"must be 1..{domain.PAGE_LIMIT_MAX}")
        if not 0 <= after <= 2**63 - 1:
            raise domain.InvalidInput("after", "is not an event id")
        return await self.store.events_after(after, limit, types)

    async def define_kit(
        self, sku: str, components: Sequence[Line] | Sequence[tuple[str, int]]
    ) -> tuple[Kit, bool]:
        """Defines kit ``sku`` once (the same definition again is a replay); components
        are SKUs with stock. Under a write-behind strategy the persister first catches up,
        so a component created a moment ago has its row. Returns the kit and whether this
        call created it."""
        kit = validate_kit(sku, components)
        await self.strategy.settle()
        defined, created = await self.store.define_kit(kit)
        self.kits_seen[defined.sku] = defined
        return defined, created

    async def kit(self, sku: str) -> tuple[Kit, int]:
        """Kit ``sku`` and how many whole kits its components' available stock makes."""
        domain.validate_sku(sku)
        found = (await self.store.kits([sku])).get(sku)
        if found is None:
            raise domain.UnknownSku([sku])
        levels = {level.sku: level for level in await self.stock([c.sku for c in found.components])}
        return found, kit_available(found, levels)

    async def list_kits(self, *, limit: int = 100, after: str | None = None) -> list[Kit]:
        limit = domain.validate_page_limit(limit)
        if after is not None:
            domain.validate_sku(after, "after")
        return await self.store.list_kits(limit=limit, after=after)

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        """Adds ``delta`` (negative: removes) to on_hand, never below what is reserved."""
        domain.validate_sku(sku)
        try:
            return await self.strategy.adjust(
                sku, domain.validate_delta(delta), domain.validate_reason(reason)
            )
        finally:
            self.admission.stock_may_have_returned([sku])

    async def movements(
        self, sku: str, *, limit: int = domain.PAGE_LIMIT_DEFAULT, cursor: str | None = None
    ) -> tuple[list[Movement], str | None]:
        return await self.store.movements(
            domain.validate_sku(sku), limit=domain.validate_page_limit(limit), cursor=cursor
        )

    # ------------------------------------------------------------------ products

    async def create_product(
        self,
        name: str,
        options: Mapping[str, Sequence[str]] | None = None,
        variants: Sequence[VariantSpec] | None = None,
        initial_on_hand: int | None = None,
        sku_prefix: str | None = None,
    ) -> Product:
        """A product and one SKU per variant (every option combination unless listed)."""
        spec = domain.plan_product(name, options, variants, initial_on_hand, sku_prefix)
        return await self.strategy.create_product(spec)

    async def get_product(self, product_id: str) -> Product:
        product = await self.store.get_product(product_id)
        live = {
            level.sku: level
            for level in await self.strategy.stock([v.sku for v in product.variants])
        }
        return Product(
            product.id,
            product.name,
            product.options,
            tuple(
                domain.Variant(v.sku, v.options, live.get(v.sku, v.stock)) for v in product.variants
            ),
        )

    async def list_products(
        self, *, search: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Product]:
        """Products whose name or a SKU contains ``search`` (any case), by name then id,
        with live stock; ``after``: the id of the last product of the previous page."""
        products = await self.store.list_products(
            search=search,
            limit=domain.validate_page_limit(limit),
            after=None
            if after is None
            else domain.validate_filter_text(after, "cursor", domain.ID_LEN_MAX),
        )
        live = {
            level.sku: level
            for level in await self.strategy.stock(
                [v.sku for product in products for v in product.variants]
            )
        }
        return [
            Product(
                product.id,
                product.name,
                product.options,
                tuple(
                    domain.Variant(v.sku, v.options, live.get(v.sku, v.stock))
                    for v in product.variants
                ),
            )
            for product in products
        ]

    async def list_standalone_stock(
        self, *, search: str | None = None, limit: int = 100
    ) -> list[StockLevel]:
        """SKUs that belong to no product, whose code contains ``search``, with live stock."""
        levels = await self.store.list_standalone_stock(
            search=search, limit=domain.validate_page_limit(limit)
        )
        live = {level.sku: level for level in await self.strategy.stock([lv.sku for lv in levels])}
        return [live.get(level.sku, level) for level in levels]
