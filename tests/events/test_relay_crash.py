"""``stockguard relay`` killed with SIGKILL twice under load loses nothing and reorders
nothing (docs/events.md#guarantees).

Buyers and admins change stock on PostgreSQL while a real ``stockguard relay`` process
delivers to a real local receiver; it is killed (SIGKILL, no clean-up) twice mid-load and
started again. Afterwards every committed event has arrived at least once, and, each id
kept at its first arrival, the events of every SKU arrived in exactly the order they
were committed (their ids' order). Two relays run at each moment but the first, so the
lease's takeover is exercised too.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from service.support import clean_environment, stockguard_command
from stockguard.engine import Engine
from stockguard.events import state
from stockguard.stores.sql.store import SqlStore

from .receiver import running_receiver
from .test_webhooks import committed, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
SKUS = ["K-1", "K-2", "K-3", "K/4 .*>"]  # the last one: characters NATS forbids, too
ROUNDS = 3


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start_relay(db_url: str, tmp_path: Path, n: int) -> subprocess.Popen[bytes]:
    env = clean_environment(
        tmp_path,
        {
            "STOCKGUARD_EVENTS__POLL_INTERVAL_S": "0.02",
            "STOCKGUARD_EVENTS__LEASE_S": "1.0",
            "STOCKGUARD_EVENTS__WEBHOOK_BACKOFF_S": "0.02",
            "STOCKGUARD_EVENTS__WEBHOOK_BACKOFF_MAX_S": "0.2",
            "STOCKGUARD_EVENTS__WEBHOOK_ATTEMPTS_MAX": "100",
        },
    )
    log = (tmp_path / f"relay-{n}.log").open("wb")
    return subprocess.Popen(
        [*stockguard_command(), "relay", "--db", db_url], env=env, stdout=log, stderr=log
    )


async def load(engine: Engine, round_no: int, holds: int) -> None:
    """Holds, releases, confirms and restocks on every SKU, concurrently."""

    async def buyer(n: int) -> None:
        sku = SKUS[n % len(SKUS)]
        try:
            held = await engine.reserve(f"r{round_no}-{n}", [(sku, 1)])
        except Exception:
            return
        if n % 3 == 0:
            await engine.release(held.reservation.id)
        elif n % 3 == 1:
            await engine.confirm(held.reservation.id)

    await asyncio.gather(*(buyer(n) for n in range(holds)))
    for sku in SKUS:
        await engine.adjust(sku, 3, f"restock {round_no}")


async def test_sigkill_twice_under_load_delivers_every_event_in_per_sku_order(
    db_url: str, tmp_path: Path
) -> None:
    engine = await Engine.open(db_url, "conditional", migrate=False)
    relays: list[subprocess.Popen[bytes]] = []
    try:
        with running_receiver() as receiver:
            assert isinstance(engine.store, SqlStore)
            endpoint = await state.create_endpoint(
                engine.store, receiver.url, None, "all", True, "crash test"
            )
            receiver.secret = endpoint.secret
            for sku in SKUS:
                await engine.set_on_hand(sku, 20)
            relays.append(start_relay(db_url, tmp_path, 0))
            for round_no in range(ROUNDS):
                await eventually(lambda: len(receiver.received) > 0, "the relay delivers")
                relays.append(start_relay(db_url, tmp_path, round_no + 1))
                load_task = asyncio.create_task(load(engine, round_no, 60))
                await asyncio.sleep(0.3)  # mid-load
                if round_no < 2:
                    for process in relays[:-1]:
                        if process.poll() is None:
                            process.send_signal(signal.SIGKILL)
                            process.wait()
                await load_task
            expected_events = []

            async def all_delivered() -> bool:
                nonlocal expected_events
                expected_events = await committed(engine)
                got = set(receiver.unique_ids())
                return bool(expected_events) and all(e.id in got for e in expected_events)

            await eventually(all_delivered, "every committed event delivered")
            assert receiver.bad_signatures == 0
            firsts = receiver.unique_ids()
            sku_of = {
                e.id: (e.event.sku or next(iter(e.event.data["levels"]), None))
                for e in expected_events
            }
            by_sku_delivered: dict[str | None, list[int]] = defaultdict(list)
            for event_id in firsts:
                by_sku_delivered[sku_of.get(event_id)].append(event_id)
            by_sku_committed: dict[str | None, list[int]] = defaultdict(list)
            for event in expected_events:
                by_sku_committed[sku_of[event.id]].append(event.id)
            for sku, ids in by_sku_committed.items():
                assert by_sku_delivered[sku] == ids, sku
            assert len(receiver.received) >= len(expected_events)
    finally:
        for process in relays:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        await engine.close()
