"""The NATS JetStream sink against the real server (docs/events.md#nats): subjects per
type and key (forbidden characters escaped), the stream created if missing, and events
re-published after a relay loses its cursor stored once (``Nats-Msg-Id`` = event id)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from conftest import service_unreachable
from stockguard.config import EventsSettings
from stockguard.engine import Engine
from stockguard.events import state
from stockguard.events.nats_sink import subject_token
from stockguard.events.relay import Relay
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore

from .test_webhooks import committed, eventually

pytestmark: list[pytest.MarkDecorator] = []
NATS_URL = os.environ.get("STOCKGUARD_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def jetstream() -> AsyncIterator[object]:
    import nats

    try:
        client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as error:
        service_unreachable("nats", error)
    try:
        yield client.jetstream()
    finally:
        await client.close()


def test_subject_tokens_escape_what_nats_forbids_and_stay_distinct() -> None:
    assert subject_token("SKU-1_a") == "SKU-1_a"
    assert subject_token("a.b") == "a%2Eb"
    assert subject_token("a b*>") == "a%20b%2A%3E"
    assert subject_token("a%2Eb") == "a%252Eb"  # an escape in the key is escaped again
    assert subject_token("ä") == "%C3%A4"
    assert subject_token("") == "_"


@pytest.mark.asyncio
async def test_events_reach_jetstream_once_even_when_republished(
    db_url: str, jetstream: object
) -> None:
    from nats.js import JetStreamContext

    assert isinstance(jetstream, JetStreamContext)
    stream = f"SGTEST_{uuid.uuid4().hex[:10]}"
    prefix = f"sgt{uuid.uuid4().hex[:8]}"
    settings = EventsSettings(
        poll_interval_s=0.02,
        lease_s=2.0,
        nats_url=NATS_URL,
        nats_stream=stream,
        nats_subject_prefix=prefix,
    )
    engine = await Engine.open(db_url, "conditional", migrate=False)
    relay = Relay(engine.store, settings)
    try:
        relay.start()
        await eventually(lambda: relay.nats is not None and relay.nats.cursor >= 0, "nats on")

        async def stream_there() -> bool:
            try:
                await jetstream.stream_info(stream)
            except Exception:
                return False
            return True

        await eventually(stream_there, "the stream was created")
        await engine.set_on_hand("N.1 *", 2)
        held = await engine.reserve("o-1", [("N.1 *", 2)])
        expected = []

        async def stored() -> bool:
            nonlocal expected
            expected = await committed(engine)
            info = await jetstream.stream_info(stream)
            return bool(expected) and info.state.messages == len(expected)

        await eventually(stored, "every event in the stream")
        sold_out = await jetstream.get_last_msg(stream, f"{prefix}.stock.sold_out.N%2E1%20%2A")
        assert sold_out.headers is not None
        assert sold_out.headers["Nats-Msg-Id"] == str(
            next(e.id for e in expected if e.event.type.value == "stock.sold_out")
        )
        held_msg = await jetstream.get_last_msg(
            stream, f"{prefix}.reservation.held.{held.reservation.id}"
        )
        assert held_msg.data

        # A relay that lost its cursor (crashed before its checkpoint) publishes again.
        await relay.stop()
        assert isinstance(engine.store, SqlStore)
        async with engine.store.transaction() as tx:
            await tx.connection.execute(
                update(t.event_cursors)
                .where(t.event_cursors.c.sink == state.NATS_SINK)
                .values(last_seq=0)
            )
            await tx.commit()
        relay = Relay(engine.store, settings)
        relay.start()
        await engine.adjust("N.1 *", 1, "one more")
        total = len(expected) + 2  # stock.changed and stock.back_in_stock

        async def republished() -> bool:
            ids = [e.id for e in await committed(engine)]
            return len(ids) == total and relay.nats is not None and relay.nats.cursor >= ids[-1]

        await eventually(republished, "every event published again")
        info = await jetstream.stream_info(stream)
        assert info.state.messages == total, "a republished event was stored twice"
    finally:
        await relay.stop()
        await engine.close()
        with contextlib.suppress(Exception):
            await jetstream.delete_stream(stream)
