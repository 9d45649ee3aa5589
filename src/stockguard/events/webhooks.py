"""One webhook endpoint's delivery loop, run by the relay (docs/events.md#webhooks).

Events go out one POST each, in id order, signed per Standard Webhooks (``signing``). The
endpoint's head event blocks the ones after it until it is delivered (any 2xx) or
dead-lettered after ``webhook_attempts_max`` attempts, so a receiver sees its events in
order however long it was down; retries wait an exponential backoff with jitter, capped.

The cursor and the attempts of the head are written with a checkpoint (fenced by the
relay's lease) after every failure, every ``CHECKPOINT_EVENTS`` deliveries and at least
every ``CHECKPOINT_S``: a relay killed between two checkpoints re-sends at most those
events (at-least-once; receivers de-duplicate on ``webhook-id``), never skips one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

import httpx
import msgspec

from stockguard import metrics
from stockguard.domain.events import StoredEvent
from stockguard.events import signing, state
from stockguard.events.state import DeliveryRow, Endpoint, Fence
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

logger = logging.getLogger("stockguard.webhooks")

PAGE = 200
"""Events one read of the outbox brings (the loop reads the next page when done)."""
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


async def post(
    client: httpx.AsyncClient, endpoint: Endpoint, event: StoredEvent, timeout_s: float
) -> Attempt:
    """One signed POST of ``event``; any 2xx is delivered, anything else a failure."""
    body = body_of(event)
    headers = signing.headers(endpoint.secret, str(event.id), int(time.time()), body)
    started = time.perf_counter()
    try:
        answer = await client.post(endpoint.url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as error:
        took = int((time.perf_counter() - started) * 1000)
        return Attempt(False, None, f"{type(error).__name__}: {error}"[:300], took)
    took = int((time.perf_counter() - started) * 1000)
    if 200 <= answer.status_code < 300:
        return Attempt(True, answer.status_code, None, took)
    return Attempt(False, answer.status_code, f"HTTP {answer.status_code}", took)


class Bell:
    """Rung by the relay when it has numbered new events; endpoint loops wait on it (or
    on their poll interval, whichever comes first)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


class EndpointLoop:
    """Delivers to one endpoint until ``stop``; the relay starts one per active endpoint."""

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
        self.store = store
        self.endpoint = endpoint
        self.sink = state.webhook_sink(endpoint.id)
        self.fence = fence
        self.client = client
        self.retry = retry
        self.bell = bell
        self.poll_s = poll_s
        self.cursor = 0
        self.head_at_ms: int | None = None
        """``at_ms`` of the event being delivered now (None: caught up): the lag gauge."""
        self._stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"stockguard-webhook-{self.endpoint.id}")

    async def stop(self) -> None:
        self._stopping.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # it logged its own
                await self.task
            self.task = None

    async def run(self) -> None:
        """The loop, restarted from the stored cursor after a database failure; a lost
        lease ends it (``LeaseLost`` goes up to the relay's task watcher)."""
        from stockguard.events.lease import LeaseLost

        while not self._stopping.is_set():
            try:
                await self._deliver_from_cursor()
            except LeaseLost:
                raise
            except Exception as error:  # database down: wait, then from the stored cursor
                logger.warning(
                    "webhook loop for %s failed: %s: %s",
                    self.endpoint.url,
                    type(error).__name__,
                    error,
                )
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _deliver_from_cursor(self) -> None:
        cursor = await state.cursor_or_start(self.store, self.sink, self.fence)
        self.cursor = cursor.last_seq
        attempts = cursor.attempts
        types = self.endpoint.type_filter()
        pending: list[DeliveryRow] = []
        dirty = False
        last_checkpoint = time.monotonic()

        async def flush() -> None:
            nonlocal dirty, last_checkpoint
            await state.checkpoint(
                self.store,
                self.fence,
                self.sink,
                last_seq=self.cursor,
                attempts=0,
                next_attempt_at_ms=None,
                last_error=None,
                deliveries=pending,
            )
            pending.clear()
            dirty = False
            last_checkpoint = time.monotonic()

        while not self._stopping.is_set():
            page = await outbox.events_after(self.store, self.cursor, PAGE, types)
            if not page:
                self.head_at_ms = None
                if dirty:
                    await flush()
                await self.bell.wait(self.poll_s)
                continue
            for event in page:
                self.head_at_ms = event.event.at_ms
                while True:
                    attempt = await post(self.client, self.endpoint, event, self.retry.timeout_s)
                    at_ms = int(time.time() * 1000)  # a log of attempts: this host's clock
                    attempts += 1
                    if attempt.ok:
                        metrics.event_delivered("webhook", "delivered")
                        pending.append(self._row(event, attempts, "delivered", attempt, at_ms))
                        self.cursor, attempts, dirty = event.id, 0, True
                        break
                    if attempts >= self.retry.attempts_max:
                        metrics.event_delivered("webhook", "dead")
                        pending.append(self._row(event, attempts, "dead", attempt, at_ms))
                        logger.warning(
                            "webhook %s: event %d dead-lettered after %d attempts (%s)",
                            self.endpoint.url,
                            event.id,
                            attempts,
                            attempt.error,
                        )
                        await state.checkpoint(
                            self.store,
                            self.fence,
                            self.sink,
                            last_seq=event.id,
                            attempts=0,
                            next_attempt_at_ms=None,
                            last_error=attempt.error,
                            deliveries=pending,
                            dead=(event, attempt.error, attempts),
                            endpoint_id=self.endpoint.id,
                        )
                        pending.clear()
                        self.cursor, attempts, dirty = event.id, 0, False
                        last_checkpoint = time.monotonic()
                        break
                    metrics.event_delivered("webhook", "failed")
                    pending.append(self._row(event, attempts, "failed", attempt, at_ms))
                    delay = self.retry.delay_s(attempts)
                    await state.checkpoint(
                        self.store,
                        self.fence,
                        self.sink,
                        last_seq=self.cursor,
                        attempts=attempts,
                        next_attempt_at_ms=at_ms + int(delay * 1000),
                        last_error=attempt.error,
                        deliveries=pending,
                    )
                    pending.clear()
                    dirty = False
                    last_checkpoint = time.monotonic()
                    await self._sleep(delay)
                    if self._stopping.is_set():
                        return
                if dirty and (
                    len(pending) >= CHECKPOINT_EVENTS
                    or time.monotonic() - last_checkpoint >= CHECKPOINT_S
                ):
                    await flush()
            if dirty and time.monotonic() - last_checkpoint >= CHECKPOINT_S:
                await flush()

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
    body = letter.envelope
    headers = signing.headers(endpoint.secret, str(letter.event_id), int(time.time()), body)
    started = time.perf_counter()
    try:
        answer = await client.post(endpoint.url, content=body, headers=headers, timeout=timeout_s)
        took = int((time.perf_counter() - started) * 1000)
        ok = 200 <= answer.status_code < 300
        attempt = Attempt(
            ok, answer.status_code, None if ok else f"HTTP {answer.status_code}", took
        )
    except httpx.HTTPError as error:
        took = int((time.perf_counter() - started) * 1000)
        attempt = Attempt(False, None, f"{type(error).__name__}: {error}"[:300], took)
    now_ms = int(time.time() * 1000)
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
            now_ms,
        ),
    )
    if attempt.ok:
        await state.drop_dead_letter(store, endpoint.id, letter.event_id)
    return attempt.ok, attempt
