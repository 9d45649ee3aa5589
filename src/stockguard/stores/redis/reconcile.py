"""Reconciliation: Redis against what SQL plus the unpersisted stream tail says it must be.

``stockguard reconcile``:

- **empty keyspace** (no load marker: first start, Redis lost its data, or the persister
  fenced it for being behind SQL): load it from SQL (``loader.py``). Nothing sells until
  then, so there is nothing to compare.
- **loaded**: take one consistent picture — the SQL stream position row is locked (the
  persister waits) while one read-only script snapshots every SKU, every held
  reservation and the newest event id — then fold the stream tail after SQL's position
  over SQL's rows (pure: ``expected``) and list every difference with Redis.
- **--repair**: make Redis what SQL plus the tail says. Counters are corrected by
  deltas, so traffic that ran after the snapshot is kept; holds missing in Redis are
  recreated from SQL or the tail, holds only Redis knows are dropped (no answered hold
  can be among them: the script that answered appended its event in the same step).
  The policy fields reserve.lua decides with (safety stock, cap, backorder allowance)
  are compared too and set from SQL's row: no event carries them, and both stores agree
  on them once an admin write returns (run reconcile at rest, not during policy writes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stockguard import domain
from stockguard.domain import Reservation, Status
from stockguard.stores.redis.client import RedisClients, unavailable_on_error
from stockguard.stores.redis.codec import (
    STREAM_START,
    decode_lines,
    encode_allocations,
    pairs,
    with_allocations,
)
from stockguard.stores.redis.events import (
    Ended,
    Event,
    Extended,
    LocationStockSet,
    PoisonEvent,
    ProductCreated,
    ReleasedPart,
    Reserved,
    StockChanged,
    parse,
)
from stockguard.stores.redis.keys import KeyLayout
from stockguard.stores.redis.loader import LoadReport, ensure_loaded, write_held
from stockguard.stores.redis.scripts import script
from stockguard.stores.redis.sql_apply import read_offset
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore

DEFAULT = domain.DEFAULT_LOCATION_CODE

Policy = tuple[int, int | None, int]
"""(safety_stock, customer_max, backorder_max): the policy fields in a stock hash."""
NO_POLICY: Policy = (0, None, 0)


@dataclass
class View:
    """Stock and held reservations as one side sees them."""

    levels: dict[str, tuple[int, int]] = field(default_factory=dict)
    """sku → (on_hand, reserved)"""
    held: dict[str, Reservation] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    """sku → its policy fields, where they are not all default (docs/design.md#backorders:
    a lost ``backorder`` field would refuse holds SQL allows)."""
    located: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(sku, location other than the default one) → (on_hand, reserved)
    (docs/locations.md); the default location's level is ``levels``."""
    located_policy: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(sku, location) → (safety_stock, backorder_max) of a level at another location."""


@dataclass(frozen=True, slots=True)
class Difference:
    subject: str
    redis: str
    expected: str


@dataclass
class ReconcileReport:
    loaded: LoadReport | None = None
    differences: list[Difference] = field(default_factory=list)
    tail_events: int = 0
    """Events in Redis not yet in SQL when the picture was taken."""
    poison_in_tail: list[str] = field(default_factory=list)
    dead_letters: int = 0
    repaired: int = 0

    @property
    def consistent(self) -> bool:
        return not self.differences and not self.poison_in_tail


def expected(sql: View, tail: Sequence[Event]) -> View:
    """SQL's rows with the unpersisted events applied in order. Pure."""
    levels = dict(sql.levels)
    held = dict(sql.held)
    located = dict(sql.located)
    located_policy = dict(sql.located_policy)

    def move(sku: str, on_hand: int, reserved: int, where: str = DEFAULT) -> None:
        if where != DEFAULT:
            at = located.get((sku, where), (0, 0))
            located[(sku, where)] = (at[0] + on_hand, at[1] + reserved)
            return
        current = levels.get(sku, (0, 0))
        levels[sku] = (current[0] + on_hand, current[1] + reserved)

    for event in tail:
        if isinstance(event, Reserved):
            held[event.reservation.id] = event.reservation
            for line in event.reservation.lines:
                for a in line.drawn():
                    move(line.sku, 0, a.quantity, a.location)
        elif isinstance(event, Ended):
            held.pop(event.reservation_id, None)
            sold = event.status is Status.CONFIRMED
            for line in event.lines:
                for a in line.drawn():
                    move(line.sku, -a.quantity if sold else 0, -a.quantity, a.location)
        elif isinstance(event, LocationStockSet):
            move(event.sku, event.delta, 0, event.location)
            located_policy[(event.sku, event.location)] = (
                event.safety_stock,
                event.backorder_max,
            )
        elif isinstance(event, Extended):
            if event.reservation_id in held:
                held[event.reservation_id] = dataclasses.replace(
                    held[event.reservation_id], expires_at_ms=event.expires_at_ms
                )
        elif isinstance(event, ReleasedPart):
            if event.reservation_id in held:
                before = held[event.reservation_id]
                held[event.reservation_id] = dataclasses.replace(
                    before, lines=domain.remaining_lines(before.lines, event.lines)
                )
            for line in event.lines:
                at = {w: n for (sku, w), n in event.given_at.items() if sku == line.sku}
                for where, units in (at or {DEFAULT: line.quantity}).items():
                    move(line.sku, 0, -units, where)
        elif isinstance(event, StockChanged):
            if event.created:
                levels[event.sku] = (event.on_hand_after, 0)
            else:
                move(event.sku, event.delta, 0)
        elif isinstance(event, ProductCreated):
            for variant in event.variants:
                levels[variant.sku] = (variant.on_hand, 0)
    return View(levels, held, dict(sql.policies), located, located_policy)


def differences(redis: View, wanted: View) -> list[Difference]:
    found: list[Difference] = []
    for sku in sorted(set(redis.levels) | set(wanted.levels)):
        have, want = redis.levels.get(sku), wanted.levels.get(sku)
        if have != want:
            found.append(Difference(f"sku {sku}", _level(have), _level(want)))
    for sku in sorted(set(redis.levels) & set(wanted.levels)):
        have_policy = redis.policies.get(sku, NO_POLICY)
        want_policy = wanted.policies.get(sku, NO_POLICY)
        if have_policy != want_policy:
            found.append(Difference(f"policy {sku}", _policy(have_policy), _policy(want_policy)))
    for key in sorted(set(redis.located) | set(wanted.located)):
        have, want = redis.located.get(key), wanted.located.get(key)
        if have != want:
            found.append(Difference(f"sku {key[0]} at {key[1]}", _level(have), _level(want)))
        elif redis.located_policy.get(key) != wanted.located_policy.get(key):
            found.append(
                Difference(
                    f"policy {key[0]} at {key[1]}",
                    str(redis.located_policy.get(key)),
                    str(wanted.located_policy.get(key)),
                )
            )
    for rid in sorted(set(redis.held) & set(wanted.held)):
        have_drawn = _drawn(redis.held[rid])
        want_drawn = _drawn(wanted.held[rid])
        if have_drawn != want_drawn:
            found.append(Difference(f"allocations {rid}", str(have_drawn), str(want_drawn)))
    for rid in sorted(set(redis.held) | set(wanted.held)):
        if (rid in redis.held) != (rid in wanted.held):
            found.append(
                Difference(
                    f"hold {rid}",
                    "held" if rid in redis.held else "absent",
                    "held" if rid in wanted.held else "absent",
                )
            )
    return found


def _drawn(reservation: Reservation) -> dict[str, tuple[Any, ...]]:
    """SKU → where its line's units are held (docs/locations.md#model)."""
    return {line.sku: line.allocations for line in reservation.lines if line.allocations}


def _level(level: tuple[int, int] | None) -> str:
    return "absent" if level is None else f"on_hand {level[0]}, reserved {level[1]}"


def _policy(policy: Policy) -> str:
    safety, cap, backorder = policy
    return f"safety_stock {safety}, customer_max {cap}, backorder_max {backorder}"


@dataclass(frozen=True, slots=True)
class _Pictures:
    redis: View
    wanted: View
    tail_events: int
    poison: list[str]
    redis_epoch: str
    sql_epoch: str


async def reconcile(
    clients: RedisClients, store: SqlStore, keys: KeyLayout, *, repair: bool = False
) -> ReconcileReport:
    report = ReconcileReport()
    async with unavailable_on_error("reconcile"):
        if not await clients.commands.exists(keys.loaded):
            report.loaded = await ensure_loaded(clients, store, keys)
        if report.loaded is None:
            pictures = await _pictures(clients, store, keys)
            if pictures.redis_epoch != pictures.sql_epoch and repair:
                # Redis is not the continuation of SQL's history: only a reload is safe.
                await script("delete_if")(clients.commands, [keys.loaded], [pictures.redis_epoch])
                report.loaded = await ensure_loaded(clients, store, keys)
                report.repaired = 1
                pictures = await _pictures(clients, store, keys)
            elif repair and differences(pictures.redis, pictures.wanted):
                report.repaired = await _repair(clients, keys, pictures.redis, pictures.wanted)
                await _repair_policies(clients, store, keys)
                pictures = await _pictures(clients, store, keys)
            report.tail_events = pictures.tail_events
            report.poison_in_tail = pictures.poison
            report.differences = differences(pictures.redis, pictures.wanted)
            if pictures.redis_epoch != pictures.sql_epoch:
                report.differences.insert(
                    0, Difference("load epoch", pictures.redis_epoch, pictures.sql_epoch)
                )
        report.dead_letters = int(await clients.commands.xlen(keys.dead))
    return report


async def _pictures(clients: RedisClients, store: SqlStore, keys: KeyLayout) -> _Pictures:
    """Redis, and what Redis must be, as of one moment (the persister held still)."""
    async with store.transaction() as tx:
        offset = await read_offset(tx, keys.events, lock=True)
        sql = View()
        for row in await tx.connection.execute(select(t.stock_levels)):
            sql.levels[row.sku] = (int(row.on_hand), int(row.reserved))
            policy = _row_policy(row)
            if policy != NO_POLICY:
                sql.policies[row.sku] = policy
        for row in await tx.connection.execute(select(t.location_levels)):
            sql.located[(row.sku, row.location)] = (int(row.on_hand), int(row.reserved))
            sql.located_policy[(row.sku, row.location)] = (
                int(row.safety_stock),
                int(row.backorder_max),
            )
        held_rows = (
            await tx.connection.execute(
                select(t.reservations).where(t.reservations.c.status == Status.HELD.value)
            )
        ).all()
        sql.held = {r.id: r for r in await tx.reservations_from_rows(held_rows)}
        snapshot: Any = await script("snapshot")(
            clients.commands,
            [keys.loaded, keys.skus, keys.due, keys.events],
            [keys.stock_prefix, keys.reservation_prefix],
        )
    epoch, levels, held, newest = snapshot
    redis = View()
    for sku, on_hand, reserved, _version, safety, cap, backorder, others in levels:
        if on_hand != "":
            redis.levels[sku] = (int(on_hand), int(reserved))
            policy = (int(safety or 0), None if cap == "" else int(cap), int(backorder or 0))
            if policy != NO_POLICY:
                redis.policies[sku] = policy
        for code, text in pairs(others).items():
            at_on_hand, at_reserved, _v, at_safety, at_backorder = (int(x) for x in text.split())
            redis.located[(sku, code)] = (at_on_hand, at_reserved)
            redis.located_policy[(sku, code)] = (at_safety, at_backorder)
    for rid, status, lines, expires_at, allocated in held:
        if status == Status.HELD.value:
            redis.held[rid] = Reservation(
                rid,
                "",
                None,
                Status.HELD,
                with_allocations(decode_lines(lines), allocated or None),
                int(expires_at or 0),
                0,
            )
    sql_epoch = offset.epoch if offset is not None else ""
    after = offset.last_id if offset is not None and sql_epoch == epoch else STREAM_START
    entries: Any = await clients.commands.xrange(keys.events, f"({after}", newest) if newest else []
    tail: list[Event] = []
    poison: list[str] = []
    for entry_id, fields in entries:
        try:
            tail.append(parse(entry_id, fields))
        except PoisonEvent as error:
            poison.append(str(error))
    return _Pictures(redis, expected(sql, tail), len(entries), poison, epoch, sql_epoch)


async def _repair(clients: RedisClients, keys: KeyLayout, redis: View, wanted: View) -> int:
    """Makes Redis what ``wanted`` says, by deltas (traffic since the picture is kept)."""
    pipe = clients.commands.pipeline(transaction=False)
    fixes = 0
    for sku in sorted(set(redis.levels) | set(wanted.levels)):
        have, want = redis.levels.get(sku), wanted.levels.get(sku)
        if have == want or want is None:
            continue  # a SKU only Redis knows: reported, left for a human
        if have is None:
            pipe.hset(keys.stock(sku), mapping={"on_hand": want[0], "reserved": want[1]})
            pipe.hsetnx(keys.stock(sku), "version", 0)
            pipe.sadd(keys.skus, sku)
        else:
            pipe.hincrby(keys.stock(sku), "on_hand", want[0] - have[0])
            pipe.hincrby(keys.stock(sku), "reserved", want[1] - have[1])
            pipe.hincrby(keys.stock(sku), "version", 1)
        fixes += 1
    for sku in sorted(set(redis.levels) & set(wanted.levels)):
        if redis.policies.get(sku, NO_POLICY) != wanted.policies.get(sku, NO_POLICY):
            fixes += 1  # written by _repair_policies, from SQL's row
    for key in sorted(set(redis.located) | set(wanted.located)):
        have, want = redis.located.get(key), wanted.located.get(key)
        policy = wanted.located_policy.get(key)
        if want is None or policy is None:
            continue  # a level only Redis knows: reported, left for a human
        if have != want or redis.located_policy.get(key) != policy:
            sku, code = key
            pipe.hset(keys.located(sku), code, f"{want[0]} {want[1]} 0 {policy[0]} {policy[1]}")
            pipe.hset(keys.stock(sku), "located", 1)
            fixes += 1
    for rid in sorted(set(wanted.held) & set(redis.held)):
        if _drawn(wanted.held[rid]) != _drawn(redis.held[rid]):
            alloc = encode_allocations(wanted.held[rid].lines)
            if alloc:
                pipe.hset(keys.reservation(rid), "alloc", alloc)
            else:
                pipe.hdel(keys.reservation(rid), "alloc")
            fixes += 1
    for rid in sorted(set(wanted.held) - set(redis.held)):
        _recreate(pipe, keys, wanted.held[rid])
        fixes += 1
    for rid in sorted(set(redis.held) - set(wanted.held)):
        pipe.delete(keys.reservation(rid))
        pipe.zrem(keys.due, rid)
        fixes += 1
    await pipe.execute()
    return fixes


async def _repair_policies(clients: RedisClients, store: SqlStore, keys: KeyLayout) -> None:
    """SQL's safety stock, caps and backorder allowances onto the stock hashes a repair
    touched or recreated (a policy write ends in SQL whichever store it starts in, so
    SQL's is the one both agreed on: strategies/redis.py ``set_policy``)."""
    c = t.stock_levels.c
    async with store.transaction(read_only=True) as tx:
        rows = (
            await tx.connection.execute(
                select(c.sku, c.safety_stock, c.customer_max, c.backorder_max)
            )
        ).all()
    pipe = clients.commands.pipeline(transaction=False)
    for row in rows:
        key = keys.stock(row.sku)
        if row.safety_stock:
            pipe.hset(key, "safety", int(row.safety_stock))
        else:
            pipe.hdel(key, "safety")
        if row.customer_max is not None:
            pipe.hset(key, "cap", int(row.customer_max))
        else:
            pipe.hdel(key, "cap")
        if row.backorder_max:
            pipe.hset(key, "backorder", int(row.backorder_max))
        else:
            pipe.hdel(key, "backorder")
    await pipe.execute()


def _row_policy(row: Any) -> Policy:
    """A ``stock_levels`` row's policy fields, as a stock hash holds them."""
    return (
        int(row.safety_stock),
        None if row.customer_max is None else int(row.customer_max),
        int(row.backorder_max),
    )


def _recreate(pipe: Any, keys: KeyLayout, reservation: Reservation) -> None:
    write_held(pipe, keys, reservation)
    pipe.set(keys.order(reservation.order_id), reservation.id)
