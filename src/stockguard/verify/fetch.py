"""Reads the final state of a run through the HTTP API (admin token), for the checker.

The audit is asked for first (``POST /v1/audit``): it waits until every answer given so
far is in the SQL tables (a write-behind strategy's persister catches up), so the admin
listings read next are complete. The state is read until two readings in a row agree
(an expiry sweep between the listing and the stock reads would otherwise show a hold
twice or not at all).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import httpx

from stockguard.verify.checker import FinalState
from stockguard.verify.history import JsonObject

PAGE = 500
READS_MAX = 10


async def _pages(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[JsonObject]:
    items: list[JsonObject] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if cursor is not None:
            params["cursor"] = cursor
        answer = await client.get(path, params=params, headers=headers)
        answer.raise_for_status()
        body = answer.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if cursor is None:
            return items


async def read_once(client: httpx.AsyncClient, admin_token: str, skus: Iterable[str]) -> FinalState:
    headers = {"Authorization": f"Bearer {admin_token}"}
    audited = await client.post("/v1/audit", headers=headers)
    audited.raise_for_status()
    reservations = {r["id"]: r for r in await _pages(client, "/v1/reservations", headers)}
    wanted = sorted(set(skus))
    stock: dict[str, JsonObject] = {}
    for start in range(0, len(wanted), 100):
        answer = await client.get(
            "/v1/stock",
            params=[("sku", sku) for sku in wanted[start : start + 100]],
            headers=headers,
        )
        answer.raise_for_status()
        stock.update({level["sku"]: level for level in answer.json()})
    movements = {sku: await _pages(client, f"/v1/stock/{sku}/movements", headers) for sku in stock}
    return FinalState(
        reservations=reservations,
        stock=stock,
        movements=movements,
        read_at_ms=int(time.time() * 1000),
        audit=audited.json(),
    )


def _fingerprint(state: FinalState) -> tuple[object, ...]:
    return (
        sorted((rid, r["status"]) for rid, r in state.reservations.items()),
        sorted((sku, s["on_hand"], s["reserved"]) for sku, s in state.stock.items()),
        sorted((sku, len(m)) for sku, m in state.movements.items()),
    )


async def read_final(
    base_url: str,
    admin_token: str,
    skus: Iterable[str],
    *,
    timeout_s: float = 60.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FinalState:
    """The final state, read until two readings agree (at most ``READS_MAX``)."""
    wanted = list(skus)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=timeout_s, transport=transport
    ) as client:
        last = await _read_when_ready(client, admin_token, wanted, timeout_s)
        for _ in range(READS_MAX):
            await asyncio.sleep(0.2)
            again = await _read_when_ready(client, admin_token, wanted, timeout_s)
            if _fingerprint(again) == _fingerprint(last):
                return again
            last = again
        return last


async def _read_when_ready(
    client: httpx.AsyncClient, admin_token: str, skus: list[str], timeout_s: float
) -> FinalState:
    """``read_once``, again after a 503 or 429 for as long as the service asks
    (``Retry-After``, at least 0.2 s) within ``timeout_s``: right after a fault the service
    may still be reconnecting, and says so; the final state is read once it answers."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            return await read_once(client, admin_token, skus)
        except httpx.HTTPStatusError as error:
            if error.response.status_code not in (429, 503):
                raise
            try:
                wait_s = max(float(error.response.headers.get("retry-after", "1")), 0.2)
            except ValueError:  # an HTTP date: this service sends seconds, wait one
                wait_s = 1.0
            if time.monotonic() + wait_s > deadline_s:
                raise
            await asyncio.sleep(wait_s)
