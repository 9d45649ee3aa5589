"""One webhook endpoint's delivery loop, run by the relay (docs/events.md#webhooks).

Events go out one POST each, in id order, signed per Standard Webhooks (``signing``). The
endpoint's head event blocks the ones after it until it is delivered (any 2xx) or
dead-lettered after ``webhook_attempts_max`` attempts, so a receiver sees its events in
order however long it was down; retries wait an exponential backoff with jitter, capped.
Only one request is ever in flight to an endpoint: pipelining would let a receiver take
event N+1 while it answers N with a 500 (and a server that dispatches pipelined requests
concurrently could take them in any order), which the per-endpoint order forbids.

What keeps one endpoint fast under that rule (docs/benchmarks.md#stock-events-delivery-latency):
a kept-alive ``http1.Http1Connection`` per endpoint (one write per POST, the answer parsed
in place; httpx only for URLs with user info or non-ASCII characters), the signing key
decoded once, the next page of the outbox read while this one is sent, and checkpoints
written beside the sending rather than in its way.

The cursor and the attempts of the head are written with a checkpoint (fenced by the
relay's lease) after every failure, every ``CHECKPOINT_EVENTS`` deliveries and at least
every ``CHECKPOINT_S``: a relay killed between two checkpoints re-sends at most those
events (at-least-once; receivers de-duplicate on ``webhook-id``), never skips one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import httpx
import msgspec

from stockguard import metrics
from stockguard.domain.events import EventType, StoredEvent
from stockguard.events import signing, state
from stockguard.events.http1 import Http1Connection
from stockguard.events.sink import Bell, SinkLoop
from stockguard.events.state import DeliveryRow, Endpoint, Fence
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

logger = logging.getLogger("stockguard.webhooks")

PAGE = 200
"""Events one read of the outbox brings (the next page is read while this one is sent)."""
CHECKPOINT_EVENTS = 200
CHECKPOINT_S = 0.25
ATTEMPTS_MAX_LIMIT = 100
_ENCODE = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Retry:
    """The retry policy of every endpoint (settings ``[events] webhook_*``)."""

    attempts_max: int = 12
    backoff_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 5.0

    def delay_s(self, attempts: int) -> float:
        """Before attempt ``attempts + 1``: base * 2^(attempts-1), capped, then scaled by a
        random 0.5-1.0 ("equal jitter"), so endpoints that failed together do not all
        come back at the same instant."""
        raw = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempts - 1, 30))
        return raw * (0.5 + random.random() / 2)


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def body_of(event: StoredEvent) -> bytes:
    return _ENCODE.encode(event.envelope())


@cache
def _tls() -> ssl.SSLContext:
    """Certificates checked against the same CA bundle httpx uses (certifi)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class EndpointClient:
    """Signed POSTs to one endpoint.

    An ``http://`` or ``https://`` URL of plain ASCII without user info goes over one
    kept-alive ``Http1Connection``; any other goes through ``fallback`` (httpx encodes
    non-ASCII hosts and paths and sends user info as Basic auth). Redirects are never
    followed either way: a 3xx is a failed attempt."""

    def __init__(self, endpoint: Endpoint, timeout_s: float, fallback: httpx.AsyncClient) -> None:
        self.url = endpoint.url
        self.key = signing.secret_key(endpoint.secret)
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.raw: Http1Connection | None = None
        parts = urlsplit(endpoint.url)
        if endpoint.url.isascii() and parts.username is None and parts.password is None:
            https = parts.scheme == "https"
            assert parts.hostname is not None  # state.validate_url
            self.raw = Http1Connection(
                parts.hostname,
                parts.port or (443 if https else 80),
                timeout_s,
                _tls() if https else None,
            )
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            self._head = (
                f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"User-Agent: {signing.USER_AGENT}\r\nContent-Type: application/json\r\n"
            ).encode()

    async def post(self, message_id: str, body: bytes) -> Attempt:
        """One signed POST of ``body``; any 2xx is delivered, anything else a failure."""
        timestamp_s = int(time.time())
        signature = signing.sign(self.key, message_id, timestamp_s, body)
        started = time.perf_counter()
        try:
            if self.raw is not None:
                request = b"%swebhook-id: %s\r\nwebhook-timestamp: %d\r\n" % (
                    self._head,
                    message_id.encode(),
                    timestamp_s,
                )
                request += b"webhook-signature: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                    signature.encode(),
                    len(body),
                    body,
                )
                status, _ = await self.raw.send(request)
            else:
                headers = signing.headers(message_id, timestamp_s, signature)
                answer = await self.fallback.post(
                    self.url, content=body, headers=headers, timeout=self.timeout_s
                )
                status = answer.status_code
        except (OSError, httpx.HTTPError) as error:  # refused, reset, timed out, TLS
            took = int((time.perf_counter() - started) * 1000)
            return Attempt(False, None, f"{type(error).__name__}: {error}"[:300], took)
        took = int((time.perf_counter() - started) * 1000)
        if 200 <= status < 300:
            return Attempt(True, status, None, took)
        return Attempt(False, status, f"HTTP {status}", took)

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()


class EndpointLoop(SinkLoop):
    """Delivers to one endpoint until ``stop``; the relay starts one per active endpoint."""

    logger = logger

    def __init__(
        self,
        store: SqlStore,
        endpoint: Endpoint,
        fence: Fence,
        client: httpx.AsyncClient,
        retry: Retry,
        bell: Bell,
        poll_s: float,
    ) -> None:
        super().__init__()
        self.name = f"stockguard-webhook-{endpoint.id}"
        self.store = store
        self.endpoint = endpoint
        self.sink = state.webhook_sink(endpoint.id)
        self.fence = fence
        self.client = client
        self.retry = retry
        self.bell = bell
        self.poll_s = poll_s
        self.pending: list[DeliveryRow] = []
        """Attempts made since the last checkpoint began (written with the next)."""
        self.saved_seq = 0
        """The cursor the last checkpoint began with."""
        self.last_save = 0.0
        self.saving: asyncio.Task[None] | None = None
        """A checkpoint being written beside the sending (at most one at a time)."""

    async def deliver(self) -> None:
        poster = EndpointClient(self.endpoint, self.retry.timeout_s, self.client)
        ahead: asyncio.Future[list[StoredEvent]] | None = None
        try:
            cursor = await state.cursor_or_start(self.store, self.sink, self.fence)
            self.cursor = self.saved_seq = cursor.last_seq
            self.last_save = time.monotonic()
            attempts = cursor.attempts
            types = self.endpoint.type_filter()
            while not self.stopping:
                if ahead is not None:
                    page, ahead = await ahead, None
                    if not page:  # read before the last ring, maybe: read again now
                        continue
                else:
                    rung = self.bell.rung
                    page = await self._read(self.cursor, types)
                    if not page:
                        self.head_at_ms = None
                        await self._save_if(due=True)
                        await self.bell.wait(self.poll_s, rung)
                        continue
                ahead = self._read(page[-1].id, types)
                for event in page:
                    attempts = await self._deliver_one(poster, event, attempts)
                    if self.stopping:
                        return
                    await self._save_if(
                        due=len(self.pending) >= CHECKPOINT_EVENTS
                        or time.monotonic() - self.last_save >= CHECKPOINT_S
                    )
        finally:
            poster.close()
            if ahead is not None:
                ahead.cancel()
            await self._saved()

    def _read(
        self, after: int, types: frozenset[EventType] | None
    ) -> asyncio.Future[list[StoredEvent]]:
        return asyncio.ensure_future(outbox.events_after(self.store, after, PAGE, types))

    async def _deliver_one(self, poster: EndpointClient, event: StoredEvent, attempts: int) -> int:
        """Sends ``event`` until it is delivered or dead-lettered (or the loop stops);
        returns the attempts at the next head (0), or at this one when stopped."""
        self.head_at_ms = event.event.at_ms
        body = body_of(event)
        message_id = str(event.id)
        while True:
            attempt = await poster.post(message_id, body)
            at_ms = int(time.time() * 1000)  # a log of attempts: this host's clock
            attempts += 1
            if attempt.ok:
                metrics.event_delivered("webhook", "delivered")
                self.pending.append(self._row(event, attempts, "delivered", attempt, at_ms))
                self.cursor = event.id
                return 0
            if attempts >= self.retry.attempts_max:
                metrics.event_delivered("webhook", "dead")
                self.pending.append(self._row(event, attempts, "dead", attempt, at_ms))
                logger.warning(
                    "webhook %s: event %d dead-lettered after %d attempts (%s)",
                    self.endpoint.url,
                    event.id,
                    attempts,
                    attempt.error,
                )
                self.cursor = event.id
                await self._checkpoint(
                    last_error=attempt.error, dead=(event, attempt.error, attempts)
                )
                return 0
            metrics.event_delivered("webhook", "failed")
            self.pending.append(self._row(event, attempts, "failed", attempt, at_ms))
            delay_s = self.retry.delay_s(attempts)
            await self._checkpoint(
                attempts=attempts,
                next_attempt_at_ms=at_ms + int(delay_s * 1000),
                last_error=attempt.error,
            )
            await self.sleep(delay_s)
            if self.stopping:
                return attempts

    async def _save_if(self, *, due: bool) -> None:
        """Starts a checkpoint of the cursor and the pending attempts beside the sending
        when ``due`` and none is being written; raises what the last one raised (a lost
        lease ends the loop, a database error restarts it from the stored cursor)."""
        if self.saving is not None and self.saving.done():
            saving, self.saving = self.saving, None
            saving.result()
        idle = not self.pending and self.cursor == self.saved_seq
        if not due or idle or self.saving is not None:
            return
        rows, self.pending = self.pending, []
        self.saved_seq, self.last_save = self.cursor, time.monotonic()
        self.saving = asyncio.create_task(
            state.checkpoint(
                self.store,
                self.fence,
                self.sink,
                last_seq=self.cursor,
                attempts=0,
                next_attempt_at_ms=None,
                last_error=None,
                deliveries=rows,
            )
        )

    async def _saved(self) -> None:
        """Waits for a checkpoint being written, and raises what it raised."""
        if self.saving is not None:
            saving, self.saving = self.saving, None
            await saving

    async def _checkpoint(
        self,
        *,
        attempts: int = 0,
        next_attempt_at_ms: int | None = None,
        last_error: str | None,
        dead: tuple[StoredEvent, str | None, int] | None = None,
    ) -> None:
        """A checkpoint written now, after any being written beside the sending (so the
        head's attempts are never overwritten by an older one)."""
        await self._saved()
        rows, self.pending = self.pending, []
        await state.checkpoint(
            self.store,
            self.fence,
            self.sink,
            last_seq=self.cursor,
            attempts=attempts,
            next_attempt_at_ms=next_attempt_at_ms,
            last_error=last_error,
            deliveries=rows,
            dead=dead,
            endpoint_id=self.endpoint.id,
        )
        self.saved_seq, self.last_save = self.cursor, time.monotonic()

    def _row(
        self, event: StoredEvent, attempt_no: int, outcome: str, attempt: Attempt, at_ms: int
    ) -> DeliveryRow:
        return DeliveryRow(
            self.endpoint.id,
            event.id,
            attempt_no,
            outcome,
            attempt.status_code,
            attempt.error,
            attempt.duration_ms,
            at_ms,
        )


async def redeliver(
    store: SqlStore, client: httpx.AsyncClient, endpoint_id: str, event_id: int, timeout_s: float
) -> tuple[bool, Attempt]:
    """An admin's redelivery of a dead letter: one signed POST now (out of order by
    nature); delivered, the dead letter goes. Recorded as outcome ``redelivered`` or
    ``failed``."""
    endpoint = await state.get_endpoint(store, endpoint_id)
    letter = await state.dead_letter(store, endpoint.id, event_id)
    poster = EndpointClient(endpoint, timeout_s, client)
    try:
        attempt = await poster.post(str(letter.event_id), letter.envelope)
    finally:
        poster.close()
    metrics.event_delivered("webhook", "redelivered" if attempt.ok else "failed")
    await state.record_delivery(
        store,
        DeliveryRow(
            endpoint.id,
            letter.event_id,
            letter.attempts + 1,
            "redelivered" if attempt.ok else "failed",
            attempt.status_code,
            attempt.error,
            attempt.duration_ms,
            int(time.time() * 1000),
        ),
    )
    if attempt.ok:
        await state.drop_dead_letter(store, endpoint.id, letter.event_id)
    return attempt.ok, attempt
