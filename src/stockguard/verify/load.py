"""A short mixed load over HTTP that records every operation in a ``History``.

Each logical client does one operation at a time, chosen at random (seeded): a new hold
of one or two lines (some with a 1 s TTL, so that expiry and late confirms happen), a
retry of a hold whose answer was lost (the same order_id and items, as a real client
retries), a deliberate replay of an acknowledged order, a confirm or release of one of
its holds (retried when the answer was lost: both are replay-safe), a read, and an admin
adjustment with a reason no other operation uses (so the checker finds it in the ledger).
Any transport error or timeout is recorded as indeterminate (``info``) and the client
carries on; the load never stops because the service is down.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from stockguard.verify.history import History, JsonObject, Kind, Op, Outcome

BACKOFF_S = 0.1
"""A client's pause after an operation got no answer (the service is down or cut off):
without it, a client would spend its whole plan on refused connections in a moment."""


UNREACHED_FACTOR_MAX = 20
"""A client gives up after this many times its planned operations, reached or not."""


@dataclass
class LoadPlan:
    clients: int = 8
    ops_per_client: int = 60
    """Operations each client makes (with ``duration_s`` None)."""
    duration_s: float | None = None
    """Run for this long instead of a number of operations (the CLI's long runs)."""
    skus: int = 4
    on_hand: int = 40
    short_ttl_share: float = 0.1
    """Share of new holds with a 1 s TTL (the others: 600 s)."""
    request_timeout_s: float = 5.0
    seed: int = 18
    pause_s: float = 0.0
    """Think time between one client's operations."""
    sku_prefix: str = "V"

    def sku_names(self) -> list[str]:
        return [f"{self.sku_prefix}{n}" for n in range(self.skus)]


@dataclass
class _Client:
    process: int
    rng: random.Random
    held: list[str] = field(default_factory=list)
    """Reservation ids this client holds (as far as it knows)."""
    acknowledged: list[JsonObject] = field(default_factory=list)
    """Requests of holds answered ok, for deliberate replays."""
    retry_holds: list[JsonObject] = field(default_factory=list)
    retry_ends: list[tuple[Kind, str]] = field(default_factory=list)
    made: int = 0


class Load:
    """Runs a ``LoadPlan`` against one or more ``serve`` URLs (client n uses URL n mod k)."""

    def __init__(
        self,
        urls: list[str],
        admin_token: str,
        plan: LoadPlan,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = urls
        self.transport = transport
        """An in-process app's transport (httpx.ASGITransport) instead of the network."""
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.plan = plan
        self.history = History()
        self.unreached: Counter[int] = Counter()
        """Per client, operations that never reached the service (connection refused):
        they do not count against ``ops_per_client``, so a run sees the service again
        after it comes back, however long its restart took."""
        self.stop = asyncio.Event()
        """Set to end a duration run early (or a run by counts: clients finish their op)."""
        self.going = asyncio.Event()
        self.going.set()
        """Cleared by ``pause``: clients wait before their next operation. A fault that
        must find the service quiet (a kill inside the expiry sweep, where any request in
        flight could be the one waiting on a lock) pauses the load around it."""
        self.in_flight = 0

    def reached(self) -> int:
        """Operations so far that reached the service (answered or not)."""
        return len(self.history) - sum(self.unreached.values())

    async def _call(self, *args: Any, **kwargs: Any) -> Op:
        self.in_flight += 1
        try:
            return await self._call_recorded(*args, **kwargs)
        finally:
            self.in_flight -= 1

    async def _call_recorded(
        self,
        client: httpx.AsyncClient,
        process: int,
        kind: Kind,
        request: JsonObject,
        method: str,
        path: str,
        body: JsonObject | None = None,
        admin: bool = False,
    ) -> Op:
        op = self.history.invoke(process, kind, request)
        try:
            answer = await client.request(
                method, path, json=body, headers=self.admin if admin else None
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # Never connected: the request was not sent, so it cannot have happened.
            self.history.lost(op, error).outcome = Outcome.FAIL
            self.unreached[process] += 1
            await asyncio.sleep(BACKOFF_S)
            return op
        except (httpx.TransportError, httpx.TimeoutException, OSError) as error:
            self.history.lost(op, error)
            await asyncio.sleep(BACKOFF_S)
            return op
        try:
            parsed: Any = answer.json()
        except ValueError:
            parsed = {"text": answer.text[:500]}
        self.history.complete(
            op, answer.status_code, parsed if isinstance(parsed, dict) else {"body": parsed}
        )
        if op.outcome is Outcome.INFO or op.status == 429:
            await asyncio.sleep(BACKOFF_S)
        return op

    async def pause(self) -> None:
        """Stops the clients before their next operation; returns once none is in flight."""
        self.going.clear()
        while self.in_flight:  # noqa: ASYNC110 - polls a counter, no event to wait on
            await asyncio.sleep(0.01)

    def resume(self) -> None:
        self.going.set()

    async def hold_as(self, process: int, requests: list[JsonObject]) -> list[Op]:
        """Holds made by the harness itself (``process``: a number no client uses), recorded
        like any other: the sweep kill makes holds it knows are due."""
        ops = []
        async with httpx.AsyncClient(
            base_url=self.urls[0], timeout=self.plan.request_timeout_s, transport=self.transport
        ) as client:
            for request in requests:
                ops.append(
                    await self._call(
                        client, process, Kind.HOLD, request, "POST", "/v1/reservations", request
                    )
                )
        return ops

    async def setup(self) -> None:
        """Sets every SKU's stock (admin PUT), retrying until each is acknowledged."""
        async with httpx.AsyncClient(
            base_url=self.urls[0], timeout=self.plan.request_timeout_s, transport=self.transport
        ) as client:
            for sku in self.plan.sku_names():
                for _ in range(100):
                    op = await self._call(
                        client, -1, Kind.SET, {"sku": sku, "on_hand": self.plan.on_hand},
                        "PUT", f"/v1/stock/{sku}", {"on_hand": self.plan.on_hand}, admin=True,
                    )  # fmt: skip
                    if op.ok:
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise RuntimeError(f"could not set the stock of {sku}: {op}")

    def _new_hold(self, state: _Client) -> JsonObject:
        rng = state.rng
        skus = rng.sample(self.plan.sku_names(), rng.choice((1, 1, 2)))
        ttl = 1 if rng.random() < self.plan.short_ttl_share else 600
        return {
            "order_id": f"p{state.process}-o{state.made}-{rng.randrange(10**6)}",
            "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in sorted(skus)],
            "ttl_seconds": ttl,
        }

    async def _one(self, client: httpx.AsyncClient, state: _Client) -> None:
        rng = state.rng
        roll = rng.random()
        state.made += 1
        if state.retry_ends and roll < 0.3:
            kind, reservation_id = state.retry_ends.pop(0)
            await self._end(client, state, kind, reservation_id)
        elif state.retry_holds and roll < 0.5:
            await self._hold(client, state, state.retry_holds.pop(0))
        elif roll < 0.45:
            await self._hold(client, state, self._new_hold(state))
        elif roll < 0.62 and state.held:
            reservation_id = state.held.pop(rng.randrange(len(state.held)))
            await self._end(client, state, Kind.CONFIRM, reservation_id)
        elif roll < 0.76 and state.held:
            reservation_id = state.held.pop(rng.randrange(len(state.held)))
            await self._end(client, state, Kind.RELEASE, reservation_id)
        elif roll < 0.82 and state.acknowledged:
            await self._hold(client, state, rng.choice(state.acknowledged))
        elif roll < 0.88 and state.held:
            reservation_id = rng.choice(state.held)
            await self._call(
                client, state.process, Kind.READ, {"reservation_id": reservation_id},
                "GET", f"/v1/reservations/{reservation_id}",
            )  # fmt: skip
        elif roll < 0.95:
            sku = rng.choice(self.plan.sku_names())
            delta = rng.choice((3, 5, 5, -1))
            reason = f"verify p{state.process} n{state.made}"
            await self._call(
                client, state.process, Kind.ADJUST, {"sku": sku, "delta": delta, "reason": reason},
                "POST", f"/v1/stock/{sku}/adjustments", {"delta": delta, "reason": reason},
                admin=True,
            )  # fmt: skip
        else:
            await self._hold(client, state, self._new_hold(state))

    async def _hold(self, client: httpx.AsyncClient, state: _Client, request: JsonObject) -> None:
        op = await self._call(
            client, state.process, Kind.HOLD, request, "POST", "/v1/reservations", request
        )
        if op.ok and op.response is not None:
            if op.status == 201 or request not in state.acknowledged:
                if op.response.get("status") == "held":
                    state.held.append(str(op.response["id"]))
                state.acknowledged.append(request)
        elif op.outcome is Outcome.INFO:
            state.retry_holds.append(request)

    async def _end(
        self, client: httpx.AsyncClient, state: _Client, kind: Kind, reservation_id: str
    ) -> None:
        verb = "confirm" if kind is Kind.CONFIRM else "release"
        op = await self._call(
            client, state.process, kind, {"reservation_id": reservation_id},
            "POST", f"/v1/reservations/{reservation_id}/{verb}",
        )  # fmt: skip
        if op.outcome is Outcome.INFO:
            state.retry_ends.append((kind, reservation_id))

    async def _client(self, process: int) -> None:
        state = _Client(process, random.Random(self.plan.seed * 1_000 + process))
        url = self.urls[process % len(self.urls)]
        deadline = None if self.plan.duration_s is None else time.monotonic() + self.plan.duration_s
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url,
            timeout=self.plan.request_timeout_s,
            limits=limits,
            transport=self.transport,
        ) as client:
            while not self.stop.is_set():
                reached = state.made - self.unreached[process]
                if deadline is None and (
                    reached >= self.plan.ops_per_client
                    or state.made >= UNREACHED_FACTOR_MAX * self.plan.ops_per_client
                ):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                await self.going.wait()
                await self._one(client, state)
                if self.plan.pause_s:
                    await asyncio.sleep(self.plan.pause_s)

    async def run(self) -> History:
        """Every client to its end; the history of all their operations."""
        await asyncio.gather(*(self._client(p) for p in range(self.plan.clients)))
        return self.history
