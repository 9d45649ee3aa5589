"""Copies the Redis event stream into the SQL store: exactly once, in order, acked last.

One persister per keyspace runs at a time (a lease): events must be applied in stream
order, and a consumer group would otherwise hand the next entries to a second consumer.
Its reads go through the consumer group ``persister`` with one consumer name, so entries
a crashed process had read but not acknowledged are read again (``XREADGROUP … 0``) by
whichever process takes the lease next.

Each batch is ONE SQL transaction that locks the stream position row, skips entries at
or before it (a replay changes nothing), refuses to skip ahead over a gap, writes the
rows, moves the position, and commits; only then are the entries acknowledged and the
stream trimmed up to (not including) the last persisted entry. An entry that cannot be
applied even alone, after a few tries, goes to the dead-letter stream with the reason
and the position moves past it; a database or Redis that cannot answer is retried with
backoff, forever, and never dead-letters anything.

Two fences keep a stale view from writing: the position row carries the epoch of the
Redis load it belongs to (a reload starts a new epoch; a persister of the old one stops),
and the last persisted entry must still be in the stream — if Redis lost it (restart from
an older AOF or none), Redis is behind SQL, so the persister deletes the load marker and
every script refuses until ``stockguard reconcile`` reloads Redis from SQL.

Over 350 lines on purpose: the lease, the read loop and the batch transaction keep the
exactly-once argument above in one place (the event-to-row mapping is in sql_apply.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis import exceptions as redis_errors

from stockguard import domain, metrics
from stockguard.stores.redis.client import RedisClients, unavailable_on_error
from stockguard.stores.redis.codec import STREAM_START, StreamId
from stockguard.stores.redis.events import Event, PoisonEvent, parse
from stockguard.stores.redis.keys import PERSIST_GROUP, KeyLayout
from stockguard.stores.redis.lease import LEASE_MS_DEFAULT, Lease
from stockguard.stores.redis.scripts import script
from stockguard.stores.redis.sql_apply import apply_events, read_offset, write_offset
from stockguard.stores.sql.store import RetryableConflict, SqlStore

log = logging.getLogger("stockguard.redis.persister")

BATCH_MAX = 1_000
"""Events per SQL transaction."""
BLOCK_MS = 200
"""How long one read waits for new events (a new event wakes it at once)."""
IDLE_S = 0.2
"""Pause while Redis is not loaded or another process holds the lease."""
BACKOFF_S_MIN = 0.05
BACKOFF_S_MAX = 5.0
CHECK_INTERVAL_S = 1.0
"""How often the holder checks that Redis is not behind SQL, and exports its lag."""
POISON_ATTEMPTS_MAX = 3
"""Tries of one event alone before it goes to the dead-letter stream."""


class EpochChanged(Exception):
    """Redis was reloaded (or belongs to another SQL history): this batch must not land."""


class StreamGap(Exception):
    """The batch does not start right after the persisted position: re-read in order."""


TRANSIENT = (domain.StoreUnavailable, RetryableConflict, EpochChanged, StreamGap)


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: StreamId
    fields: dict[str, str]
    event: Event | None
    poison: str | None


class Persister:
    def __init__(
        self,
        clients: RedisClients,
        store: SqlStore,
        keys: KeyLayout,
        *,
        batch_max: int = BATCH_MAX,
        block_ms: int = BLOCK_MS,
        lease_ms: int = LEASE_MS_DEFAULT,
    ) -> None:
        assert 1 <= batch_max <= 10_000
        assert 1 <= block_ms <= 5_000
        self.clients = clients
        self.store = store
        self.keys = keys
        self.batch_max = batch_max
        self.block_ms = block_ms
        self.lease = Lease(clients.commands, keys.persister_lease, lease_ms)
        self.epoch: str | None = None
        self.persisted: StreamId | None = None
        """Last entry committed into SQL in ``epoch`` (known while holding the lease)."""
        self.dead_letters = 0
        self.fenced = False
        self._synced = False
        self._recovering = True
        self._progress = asyncio.Condition()
        self._stopping = False
        self._next_check_s = 0.0

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Persists until cancelled; every failure is retried with capped backoff."""
        backoff_s = BACKOFF_S_MIN
        self._stopping = False
        try:
            while not self._stopping:
                try:
                    handled = await self.step()
                except (*TRANSIENT, redis_errors.ResponseError) as error:
                    # ResponseError: e.g. the stream was deleted under a blocked read.
                    if _cancel_requested():
                        # The client library turned our cancel into a read timeout.
                        raise asyncio.CancelledError() from error
                    self._synced = False
                    log.warning("persister retries in %.2fs: %s", backoff_s, error)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_S_MAX)
                    continue
                except Exception:  # a bug: keep persisting what can be, loudly
                    log.exception("persister step failed; retrying in %.2fs", BACKOFF_S_MAX)
                    self._synced = False
                    await asyncio.sleep(BACKOFF_S_MAX)
                    continue
                if _cancel_requested():  # swallowed by a read that answered "no data"
                    raise asyncio.CancelledError()
                backoff_s = BACKOFF_S_MIN
                if handled < 0:
                    await asyncio.sleep(IDLE_S)
        finally:
            with contextlib.suppress(Exception):
                await self.lease.release()

    def stop(self) -> None:
        """Asks ``run`` to return after the current step (cancel it to stop at once)."""
        self._stopping = True

    async def step(self) -> int:
        """One read and one batch: entries handled, 0 when idle, -1 when not our turn."""
        async with unavailable_on_error("persister"):
            epoch, ours = await script("turn")(
                self.clients.commands,
                [self.keys.loaded, self.lease.key],
                [self.lease.token, str(self.lease.lease_ms)],
            )
            self.lease.held = bool(ours)
            if not epoch or not ours:
                self._synced = False
                return -1
            if epoch != self.epoch or not self._synced:
                await self._sync(str(epoch))
            # Cheap, but not free: at most once a second (and at every takeover).
            checking = time.monotonic() >= self._next_check_s
            if checking:
                self._next_check_s = time.monotonic() + CHECK_INTERVAL_S
                if await self._behind():
                    return -1
            entries = await self._read()
        if entries:
            await self._persist(entries)
        if checking:
            await self._measure()
        return len(entries)

    async def _sync(self, epoch: str) -> None:
        """Takes up the stream where SQL says it was left (after a takeover or a reload)."""
        async with self.store.transaction(read_only=True) as tx:
            offset = await read_offset(tx, self.keys.events)
        if offset is None or offset.epoch != epoch:
            raise EpochChanged(
                f"Redis holds load {epoch}, SQL {offset.epoch if offset else 'none'}: "
                "run `stockguard reconcile`"
            )
        with contextlib.suppress(redis_errors.ResponseError):  # BUSYGROUP: it exists
            await self.clients.commands.xgroup_create(
                self.keys.events, PERSIST_GROUP, id="0", mkstream=True
            )
        self.epoch = epoch
        self._next_check_s = 0.0
        self.persisted = offset.last_id
        self._recovering = True
        self._synced = True
        self.dead_letters = int(await self.clients.commands.xlen(self.keys.dead))
        metrics.REDIS_DEAD_LETTERS.set(self.dead_letters)

    async def _behind(self) -> bool:
        """Redis lost entries SQL already has: fence it (nothing may sell on that state)."""
        if self.persisted is None or self.persisted == STREAM_START:
            return False
        last = str(self.persisted)
        if await self.clients.commands.xrange(self.keys.events, last, last, count=1):
            return False
        await self._fence(last)
        return True

    async def _fence(self, missing: str) -> None:
        assert self.epoch is not None
        await script("delete_if")(self.clients.commands, [self.keys.loaded], [self.epoch])
        self.fenced = True
        self._synced = False
        log.error(
            "Redis lost stream entry %s that SQL already holds: Redis is behind SQL. "
            "Reservations refused until `stockguard reconcile` reloads it.",
            missing,
        )

    async def _read(self) -> list[tuple[str, dict[str, str] | None]]:
        """Entries read before and never acknowledged first (a takeover), then new ones."""
        if self._recovering:
            pending = await self._read_group("0", block_ms=None)
            if pending:
                return pending
            self._recovering = False
        return await self._read_group(">", block_ms=self.block_ms)

    async def _read_group(
        self, start: str, block_ms: int | None
    ) -> list[tuple[str, dict[str, str] | None]]:
        try:
            reply: Any = await self.clients.blocking.xreadgroup(
                PERSIST_GROUP,
                PERSIST_GROUP,
                {self.keys.events: start},
                count=self.batch_max,
                block=block_ms,
            )
        except redis_errors.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._synced = False  # the stream went away: look again next step
            return []
        if not reply:
            return []
        entries: list[tuple[str, dict[str, str] | None]] = reply[0][1]
        return entries

    # ------------------------------------------------------------------ batches

    async def _persist(self, raw: Sequence[tuple[str, dict[str, str] | None]]) -> None:
        entries = [_entry(entry_id, fields) for entry_id, fields in raw]
        try:
            await self._commit(entries)
        except TRANSIENT:
            raise
        except Exception as error:  # some entry is poison: find it by going one by one
            log.warning("batch of %d failed (%s); applying one by one", len(entries), error)
            for entry in entries:
                await self._commit_alone(entry)
        async with unavailable_on_error("persister ack"):
            pipe = self.clients.commands.pipeline(transaction=False)
            pipe.xack(self.keys.events, PERSIST_GROUP, *[str(e.entry_id) for e in entries])
            if self.persisted is not None:
                # Exact MINID keeps the last persisted entry: `_behind` looks for it.
                pipe.xtrim(self.keys.events, minid=str(self.persisted), approximate=False)
            await pipe.execute()

    async def _commit_alone(self, entry: _Entry) -> None:
        reason = entry.poison
        for attempt in range(POISON_ATTEMPTS_MAX if reason is None else 0):
            try:
                await self._commit([entry])
                return
            except TRANSIENT:
                raise
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                await asyncio.sleep(BACKOFF_S_MIN * 2**attempt)
        await self._commit([replace(entry, event=None, poison=reason or "unknown")])

    async def _commit(self, entries: Sequence[_Entry]) -> None:
        async with self.store.transaction() as tx:
            offset = await read_offset(tx, self.keys.events, lock=True)
            if offset is None or offset.epoch != self.epoch:
                raise EpochChanged("Redis was reloaded while this batch was read")
            fresh = [e for e in entries if e.entry_id > offset.last_id]
            if not fresh:
                self.persisted = offset.last_id
                return
            await self._check_continuity(offset.last_id, fresh[0].entry_id)
            await apply_events(tx, [e.event for e in fresh if e.event is not None])
            dead = [e for e in fresh if e.event is None]
            if dead:  # before the commit: a crash here dead-letters twice, never zero times
                await self._dead_letter(dead)
            # The entry id's time part is Redis's clock: no extra round trip for a time.
            await write_offset(tx, self.keys.events, fresh[-1].entry_id, fresh[-1].entry_id.ms)
            await tx.commit()
        self.persisted = fresh[-1].entry_id
        metrics.REDIS_PERSISTED.inc(len(fresh) - len(dead))
        async with self._progress:
            self._progress.notify_all()

    async def _check_continuity(self, last: StreamId, first: StreamId) -> None:
        """The batch must start right after the last persisted entry, which must still be
        in the stream (one round trip checks both, inside the batch's transaction):

        - an unpersisted entry in between → another persister overlapped: re-read;
        - the last persisted entry gone → Redis restarted with less than SQL has: fence.
        """
        start = "-" if last == STREAM_START else str(last)
        async with unavailable_on_error("persister"):
            before: Any = await self.clients.commands.xrange(
                self.keys.events, start, f"({first}", count=2
            )
        found = [StreamId.parse(str(entry_id)) for entry_id, _ in before]
        if last != STREAM_START:
            if not found or found[0] != last:
                await self._fence(str(last))
                raise EpochChanged(f"Redis lost entry {last}, which SQL holds")
            found = found[1:]
        if found:
            raise StreamGap(f"entries between {last} and {first} are not persisted yet")

    async def _dead_letter(self, dead: Sequence[_Entry]) -> None:
        async with unavailable_on_error("dead letter"):
            for entry in dead:
                letter: dict[Any, Any] = {
                    **entry.fields,
                    "dead_entry": str(entry.entry_id),
                    "dead_reason": entry.poison or "",
                }
                await self.clients.commands.xadd(self.keys.dead, letter)
            self.dead_letters = int(await self.clients.commands.xlen(self.keys.dead))
        metrics.REDIS_DEAD_LETTERS.set(self.dead_letters)
        log.error("moved %d poison event(s) to %s", len(dead), self.keys.dead)

    async def _measure(self) -> None:
        """Lag: events not yet in SQL, and the age of the oldest of them."""
        try:
            async with unavailable_on_error("persister lag"):
                groups = await self.clients.commands.xinfo_groups(self.keys.events)
                oldest = await self.clients.commands.xrange(
                    self.keys.events, f"({self.persisted or STREAM_START}", "+", count=1
                )
        except redis_errors.ResponseError:  # the stream went away meanwhile
            return
        for group in groups:
            if group.get("name") == PERSIST_GROUP:
                lag = int(group.get("lag") or 0) + int(group.get("pending") or 0)
                metrics.REDIS_PERSIST_LAG_EVENTS.set(lag)
        age_ms = time.time() * 1000 - StreamId.parse(str(oldest[0][0])).ms if oldest else 0
        metrics.REDIS_PERSIST_LAG_MS.set(max(age_ms, 0))

    # ------------------------------------------------------------------ waiting

    async def wait_persisted(self, target: StreamId, timeout_s: float) -> bool:
        """Waits until this persister committed ``target``; False at the deadline."""

        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(
                    lambda: self.persisted is not None and self.persisted >= target
                )

        try:
            await asyncio.wait_for(reached(), timeout_s)
        except TimeoutError:
            return False
        return True


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _entry(entry_id: str, fields: dict[str, str] | None) -> _Entry:
    if not fields:
        return _Entry(
            StreamId.parse(entry_id), {}, None, "the entry was deleted before it was persisted"
        )
    try:
        return _Entry(StreamId.parse(entry_id), fields, parse(entry_id, fields), None)
    except PoisonEvent as error:
        return _Entry(StreamId.parse(entry_id), fields, None, str(error))
