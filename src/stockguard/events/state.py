"""The relay's tables (migration 0005): webhook endpoints, sink cursors, recent deliveries
and dead letters. Plain statements; the relay and the admin API decide what to write.

Every table is bounded: endpoints by ``ENDPOINTS_MAX``, deliveries pruned to the newest
``DELIVERIES_KEEP`` rows, dead letters by the outbox's maximum retention, cursors one per
sink. Writes the relay makes take a ``fence`` (its lease check) in the same transaction.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import delete, func, insert, select, update

from stockguard import domain
from stockguard.domain.events import EventType, StoredEvent, parse_event_types
from stockguard.events.errors import WebhookNotFound
from stockguard.stores.sql import outbox
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore
from stockguard.stores.sql.tx import Tx

ENDPOINTS_MAX = 100
"""Webhook endpoints one database may have: each is a delivery loop in the relay."""
DELIVERIES_KEEP = 10_000
"""Delivery attempts kept (newest), over all endpoints; older ones are pruned."""
URL_LEN_MAX = 2048
DESCRIPTION_LEN_MAX = 200
ERROR_LEN_MAX = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES_MIN, SECRET_BYTES_MAX = 24, 64
"""A secret's key length (Standard Webhooks: ``whsec_`` + base64 of 24-64 random bytes)."""

Fence = Callable[[Tx], Awaitable[None]]
_ENCODE = msgspec.json.Encoder()
_e = t.webhook_endpoints.c
_k = t.event_cursors.c
_d = t.webhook_deliveries.c
_x = t.webhook_dead_letters.c


def webhook_sink(endpoint_id: str) -> str:
    return f"webhook:{endpoint_id}"


NATS_SINK = "nats"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    secret: str
    types: str
    """The setting-style filter (``all``, ``stock``, comma-separated types)."""
    active: bool
    description: str
    created_at_ms: int

    def type_filter(self) -> frozenset[EventType] | None:
        """The types this endpoint receives; None: every type (no filter in the query)."""
        chosen = parse_event_types(self.types)
        return None if chosen == frozenset(EventType) else chosen


@dataclass(frozen=True, slots=True)
class Cursor:
    sink: str
    last_seq: int
    attempts: int
    next_attempt_at_ms: int | None
    last_error: str | None
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: str
    event_id: int
    attempt: int
    outcome: str
    """``delivered``, ``failed`` (will be retried), ``dead`` (dead-lettered), ``redelivered``."""
    status_code: int | None
    error: str | None
    duration_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    endpoint_id: str
    event_id: int
    type: str
    envelope: bytes
    attempts: int
    last_error: str | None
    dead_at_ms: int


# ---------------------------------------------------------------------------- validation


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host: where the relay will POST."""
    if len(url) > URL_LEN_MAX:
        raise domain.InvalidInput("url", f"at most {URL_LEN_MAX} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise domain.InvalidInput("url", "spaces and control characters are not allowed")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        raise domain.InvalidInput("url", f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise domain.InvalidInput("url", "must be an absolute http:// or https:// URL")
    return url


def validate_secret(secret: str) -> str:
    """``whsec_`` + base64 of 24-64 bytes, as Standard Webhooks libraries expect it."""
    if not secret.startswith(SECRET_PREFIX):
        raise domain.InvalidInput("secret", f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise domain.InvalidInput("secret", "must be whsec_ followed by base64") from None
    if not SECRET_BYTES_MIN <= len(key) <= SECRET_BYTES_MAX:
        raise domain.InvalidInput(
            "secret", f"must hold {SECRET_BYTES_MIN}-{SECRET_BYTES_MAX} bytes of key"
        )
    return secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def validate_types(types: str) -> str:
    try:
        chosen = parse_event_types(types)
    except domain.InvalidInput as error:
        raise domain.InvalidInput("types", error.reason) from None
    if not chosen:
        raise domain.InvalidInput("types", "an endpoint must receive at least one type")
    return types


def validate_description(text: str) -> str:
    return domain.validate_filter_text(text, "description", DESCRIPTION_LEN_MAX) if text else ""


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LEN_MAX]


async def _read(store: SqlStore, query: Any) -> Sequence[Any]:
    """The rows of one read-only query: every read here is one statement."""
    async with store.transaction(read_only=True) as tx:
        return (await tx.connection.execute(query)).all()


def _of_endpoint(query: Any, column: Any, endpoint_id: str | None) -> Any:
    """``query`` narrowed to one endpoint when an id is given (ids are 36 characters)."""
    return query if endpoint_id is None else query.where(column == endpoint_id[:36])


def _letter(endpoint_id: str, event_id: int) -> Any:
    """The key of one dead letter."""
    return (_x.endpoint_id == endpoint_id[:36]) & (_x.event_id == event_id)


async def _start_cursor(tx: Tx, sink: str, now: int) -> int:
    """A new sink's cursor at the current last id: it receives events from now on (an
    endpoint just registered, NATS just turned on, do not replay the retained history)."""
    start = int((await tx.connection.execute(select(func.max(t.stock_events.c.seq)))).scalar() or 0)
    await tx.connection.execute(
        insert(t.event_cursors).values(sink=sink, last_seq=start, attempts=0, updated_at_ms=now)
    )
    return start


# ---------------------------------------------------------------------------- endpoints


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        str(row.id),
        str(row.url),
        str(row.secret),
        str(row.types),
        bool(row.active),
        str(row.description),
        int(row.created_at_ms),
    )


async def create_endpoint(
    store: SqlStore, url: str, secret: str | None, types: str, active: bool, description: str
) -> Endpoint:
    """A new endpoint; it receives events numbered from now on (its cursor starts at the
    current last id)."""
    url = validate_url(url)
    secret = validate_secret(secret) if secret is not None else new_secret()
    types = validate_types(types)
    description = validate_description(description)
    endpoint_id = str(uuid.uuid4())
    async with store.transaction() as tx:
        count = (
            await tx.connection.execute(select(func.count()).select_from(t.webhook_endpoints))
        ).scalar_one()
        if count >= ENDPOINTS_MAX:
            raise domain.InvalidInput("url", f"at most {ENDPOINTS_MAX} endpoints per database")
        now = await tx.now_ms()
        await tx.connection.execute(
            insert(t.webhook_endpoints).values(
                id=endpoint_id,
                url=url,
                secret=secret,
                types=types,
                active=active,
                description=description,
                created_at_ms=now,
            )
        )
        await _start_cursor(tx, webhook_sink(endpoint_id), now)
        await tx.commit()
    return Endpoint(endpoint_id, url, secret, types, active, description, now)


async def list_endpoints(store: SqlStore) -> list[Endpoint]:
    query = select(t.webhook_endpoints).order_by(_e.created_at_ms, _e.id).limit(ENDPOINTS_MAX)
    return [_endpoint(row) for row in await _read(store, query)]


async def get_endpoint(store: SqlStore, endpoint_id: str) -> Endpoint:
    rows = await _read(store, _of_endpoint(select(t.webhook_endpoints), _e.id, endpoint_id))
    if not rows:
        raise WebhookNotFound(f"webhook endpoint {endpoint_id!r}")
    return _endpoint(rows[0])


async def update_endpoint(
    store: SqlStore,
    endpoint_id: str,
    *,
    url: str | None = None,
    types: str | None = None,
    active: bool | None = None,
    description: str | None = None,
) -> Endpoint:
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = validate_url(url)
    if types is not None:
        values["types"] = validate_types(types)
    if active is not None:
        values["active"] = active
    if description is not None:
        values["description"] = validate_description(description)
    if values:
        async with store.transaction() as tx:
            result = await tx.connection.execute(
                update(t.webhook_endpoints).where(_e.id == endpoint_id[:36]).values(**values)
            )
            if result.rowcount != 1:
                raise WebhookNotFound(f"webhook endpoint {endpoint_id!r}")
            await tx.commit()
    return await get_endpoint(store, endpoint_id)


async def delete_endpoint(store: SqlStore, endpoint_id: str) -> None:
    """The endpoint, its cursor, deliveries and dead letters."""
    endpoint_id = endpoint_id[:36]
    async with store.transaction() as tx:
        result = await tx.connection.execute(
            delete(t.webhook_endpoints).where(_e.id == endpoint_id)
        )
        if result.rowcount != 1:
            raise WebhookNotFound(f"webhook endpoint {endpoint_id!r}")
        await tx.connection.execute(
            delete(t.event_cursors).where(_k.sink == webhook_sink(endpoint_id))
        )
        await tx.connection.execute(
            delete(t.webhook_deliveries).where(_d.endpoint_id == endpoint_id)
        )
        await tx.connection.execute(
            delete(t.webhook_dead_letters).where(_x.endpoint_id == endpoint_id)
        )
        await tx.commit()


# ---------------------------------------------------------------------------- cursors


def _cursor(row: Any) -> Cursor:
    return Cursor(
        str(row.sink),
        int(row.last_seq),
        int(row.attempts),
        None if row.next_attempt_at_ms is None else int(row.next_attempt_at_ms),
        row.last_error,
        int(row.updated_at_ms),
    )


async def cursors(store: SqlStore) -> dict[str, Cursor]:
    rows = await _read(store, select(t.event_cursors).limit(ENDPOINTS_MAX + 10))
    return {str(row.sink): _cursor(row) for row in rows}


async def cursor_or_start(store: SqlStore, sink: str, fence: Fence) -> Cursor:
    """The sink's cursor; a sink seen for the first time starts at the current last id
    (turning NATS on does not replay the whole retained history)."""
    async with store.transaction() as tx:
        await fence(tx)
        row = (await tx.connection.execute(select(t.event_cursors).where(_k.sink == sink))).first()
        if row is not None:
            await tx.commit()
            return _cursor(row)
        now = await tx.now_ms()
        start = await _start_cursor(tx, sink, now)
        await tx.commit()
        return Cursor(sink, start, 0, None, None, now)


@dataclass(slots=True)
class DeliveryRow:
    """A delivery attempt not yet written (written with the next checkpoint)."""

    endpoint_id: str
    event_id: int
    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int
    at_ms: int


async def checkpoint(
    store: SqlStore,
    fence: Fence,
    sink: str,
    *,
    last_seq: int,
    attempts: int,
    next_attempt_at_ms: int | None,
    last_error: str | None,
    deliveries: Sequence[DeliveryRow] = (),
    dead: tuple[StoredEvent, str | None, int] | None = None,
    endpoint_id: str | None = None,
) -> None:
    """Moves a sink's cursor (never backwards), records its delivery attempts and a dead
    letter, all in one fenced transaction."""
    async with store.transaction() as tx:
        await fence(tx)
        now = await tx.now_ms()
        await tx.connection.execute(
            update(t.event_cursors)
            .where(_k.sink == sink, _k.last_seq <= last_seq)
            .values(
                last_seq=last_seq,
                attempts=attempts,
                next_attempt_at_ms=next_attempt_at_ms,
                last_error=_clip(last_error),
                updated_at_ms=now,
            )
        )
        await _insert_deliveries(tx, deliveries)
        if dead is not None and endpoint_id is not None:
            event, error, tries = dead
            await tx.connection.execute(
                delete(t.webhook_dead_letters).where(_letter(endpoint_id, event.id))
            )
            await tx.connection.execute(
                insert(t.webhook_dead_letters).values(
                    endpoint_id=endpoint_id,
                    event_id=event.id,
                    type=event.event.type.value,
                    envelope=_ENCODE.encode(event.envelope()).decode(),
                    attempts=tries,
                    last_error=_clip(error),
                    dead_at_ms=now,
                )
            )
        await tx.commit()


# ---------------------------------------------------------------------------- deliveries


def _delivery(row: Any) -> Delivery:
    return Delivery(
        int(row.id),
        str(row.endpoint_id),
        int(row.event_id),
        int(row.attempt),
        str(row.outcome),
        None if row.status_code is None else int(row.status_code),
        row.error,
        int(row.duration_ms),
        int(row.at_ms),
    )


async def _insert_deliveries(tx: Tx, rows: Sequence[DeliveryRow]) -> None:
    if rows:
        await tx.connection.execute(
            insert(t.webhook_deliveries),
            [
                {
                    "endpoint_id": d.endpoint_id,
                    "event_id": d.event_id,
                    "attempt": d.attempt,
                    "outcome": d.outcome,
                    "status_code": d.status_code,
                    "error": _clip(d.error),
                    "duration_ms": d.duration_ms,
                    "at_ms": d.at_ms,
                }
                for d in rows
            ],
        )


async def recent_deliveries(store: SqlStore, endpoint_id: str | None, limit: int) -> list[Delivery]:
    query = _of_endpoint(select(t.webhook_deliveries), _d.endpoint_id, endpoint_id)
    return [_delivery(row) for row in await _read(store, query.order_by(_d.id.desc()).limit(limit))]


async def record_delivery(store: SqlStore, row: DeliveryRow) -> None:
    """One attempt made outside the relay (an admin's redelivery)."""
    async with store.transaction() as tx:
        await _insert_deliveries(tx, [row])
        await tx.commit()


# ---------------------------------------------------------------------------- dead letters


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        str(row.endpoint_id),
        int(row.event_id),
        str(row.type),
        str(row.envelope).encode(),
        int(row.attempts),
        row.last_error,
        int(row.dead_at_ms),
    )


async def dead_letters(store: SqlStore, endpoint_id: str | None, limit: int) -> list[DeadLetter]:
    query = _of_endpoint(select(t.webhook_dead_letters), _x.endpoint_id, endpoint_id)
    query = query.order_by(_x.dead_at_ms.desc(), _x.event_id.desc()).limit(limit)
    return [_dead_letter(row) for row in await _read(store, query)]


async def dead_letter(store: SqlStore, endpoint_id: str, event_id: int) -> DeadLetter:
    rows = await _read(store, select(t.webhook_dead_letters).where(_letter(endpoint_id, event_id)))
    if not rows:
        raise WebhookNotFound(f"dead letter of event {event_id} for endpoint {endpoint_id!r}")
    return _dead_letter(rows[0])


async def drop_dead_letter(store: SqlStore, endpoint_id: str, event_id: int) -> None:
    async with store.transaction() as tx:
        await tx.connection.execute(
            delete(t.webhook_dead_letters).where(_letter(endpoint_id, event_id))
        )
        await tx.commit()


# ---------------------------------------------------------------------------- the outbox


async def any_unsequenced(store: SqlStore) -> bool:
    """Whether any committed outbox row waits for its id: one read through the unique
    index on ``seq`` (NULLs included), so the relay opens its fenced write only then."""
    query = select(t.stock_events.c.row_id).where(t.stock_events.c.seq.is_(None)).limit(1)
    return bool(await _read(store, query))


# ---------------------------------------------------------------------------- pruning


async def prune(
    store: SqlStore,
    fence: Fence,
    *,
    horizon_seq: int,
    retention_ms: int,
    retention_max_ms: int,
) -> int:
    """Bounded clean-up: outbox events every live sink is past and older than the
    retention, any event older than the maximum retention, deliveries beyond the newest
    ``DELIVERIES_KEEP``, dead letters older than the maximum retention. Returns how many
    outbox events went."""
    async with store.transaction() as tx:
        await fence(tx)
        now = await tx.now_ms()
        await tx.commit()
    gone = await outbox.prune(store, up_to_seq=horizon_seq, before_at_ms=now - retention_ms)
    top = await outbox.last_seq(store)
    gone += await outbox.prune(store, up_to_seq=top, before_at_ms=now - retention_max_ms)
    async with store.transaction() as tx:
        await fence(tx)
        newest = (await tx.connection.execute(select(func.max(_d.id)))).scalar()
        if newest is not None and int(newest) > DELIVERIES_KEEP:
            await tx.connection.execute(
                delete(t.webhook_deliveries).where(_d.id <= int(newest) - DELIVERIES_KEEP)
            )
        await tx.connection.execute(
            delete(t.webhook_dead_letters).where(_x.dead_at_ms < now - retention_max_ms)
        )
        await tx.commit()
    return gone
