"""Set-up before a run and the correctness checks after it, all through the service's API.

The checks are the acceptance test of ``docs/design.md#seed-003``, stated on what the
service itself answers afterwards, so they hold for any deployment the command can reach:

- **successes**: on one SKU, exactly ``min(stock, buyers)`` holds were granted;
- **stock**: for every SKU, ``on_hand`` fell by the units confirmed and ``reserved`` rose
  by the units still held, so ``available`` fell by both
  (``docs/design.md#i2-reserved-matches-holds``, ``docs/design.md#i3-on-hand-follows-the-ledger``),
  and no SKU has more units held and sold than it had (``docs/design.md#i1-never-oversold``);
- **statuses**: no answer outside the scenario's allowed set (and none missing);
- **holds exist**: every 201's reservation is there, for its order and its lines, in the
  state the buyer's confirm or release left it in (``docs/design.md#reservation-lifecycle``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from stockguard.loadtest import http1
from stockguard.loadtest.worker import CONFIRMED, RELEASED, WALKED, Granted

STOCK_PAGE = 100
"""SKUs per ``GET /v1/stock?sku=…`` (the API's limit: docs/design.md#limits)."""
AUDIT_CONNECTIONS = 32
SETTLE_TRIES = 5
EXPIRY_WAIT_EXTRA_S = 30.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Level:
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Admin:
    """The few admin calls of set-up and audit (httpx; none of them is on the hot path)."""

    def __init__(self, base_url: str, admin_token: str | None, token: str | None) -> None:
        self.base_url = base_url
        read_token = admin_token or token
        self.admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.read = {"Authorization": f"Bearer {read_token}"} if read_token else {}
        self.client = httpx.AsyncClient(base_url=base_url, timeout=60.0)

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def set_stock(self, skus: list[str], on_hand: int) -> None:
        async def put(sku: str) -> None:
            answer = await self.client.put(
                f"/v1/stock/{quote(sku, safe='')}", json={"on_hand": on_hand}, headers=self.admin
            )
            if answer.status_code != 200:
                raise SetupFailed(
                    f"PUT /v1/stock/{sku} answered {answer.status_code}: {answer.text[:300]}"
                    + (" (is the admin token right?)" if answer.status_code in (401, 403) else "")
                )

        for at in range(0, len(skus), 50):
            await asyncio.gather(*(put(sku) for sku in skus[at : at + 50]))

    async def levels(self, skus: list[str]) -> dict[str, Level]:
        found: dict[str, Level] = {}
        for at in range(0, len(skus), STOCK_PAGE):
            page = skus[at : at + STOCK_PAGE]
            answer = await self.client.get(
                "/v1/stock", params=[("sku", sku) for sku in page], headers=self.read
            )
            if answer.status_code != 200:
                raise SetupFailed(
                    f"GET /v1/stock answered {answer.status_code}: {answer.text[:300]}"
                )
            for stock in answer.json():
                found[stock["sku"]] = Level(int(stock["on_hand"]), int(stock["reserved"]))
        return found

    async def metrics(self) -> str | None:
        try:
            answer = await self.client.get("/metrics")
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None


class SetupFailed(RuntimeError):
    pass


async def fetch_reservations(
    host: str, port: int, token: str | None, ids: list[str]
) -> dict[str, tuple[int, dict[str, Any] | None]]:
    """``GET /v1/reservations/{id}`` for every id, on a few raw keep-alive connections."""
    requests = http1.RawRequests(f"{host}:{port}", token)
    todo = list(reversed(ids))
    found: dict[str, tuple[int, dict[str, Any] | None]] = {}
    decode = msgspec.json.Decoder().decode

    async def reader() -> None:
        conn = http1.RawConnection(host, port, 60.0)
        try:
            while todo:
                wanted = todo.pop()
                try:
                    status, body = await conn.send(
                        requests.get(f"/v1/reservations/{quote(wanted, safe='')}")
                    )
                except (OSError, TimeoutError, ConnectionError) as failed:
                    found[wanted] = (0, {"error": str(failed)})
                    continue
                found[wanted] = (status, decode(body) if status == 200 else None)
        finally:
            conn.close()

    await asyncio.gather(*(reader() for _ in range(min(AUDIT_CONNECTIONS, max(1, len(ids))))))
    return found


def check_statuses(statuses: Counter[int], allowed: frozenset[int]) -> Check:
    outside = {s: n for s, n in sorted(statuses.items()) if s not in allowed}
    allowed_text = ", ".join(str(s) for s in sorted(allowed))
    if not outside:
        return Check("statuses", True, f"every answer in {{{allowed_text}}}")
    shown = ", ".join(f"{'no answer' if s == 0 else s}×{n:,}" for s, n in outside.items())
    return Check("statuses", False, f"answers outside {{{allowed_text}}}: {shown}")


async def audit(
    admin: Admin,
    *,
    host: str,
    port: int,
    scenario: str,
    skus: list[str],
    before: dict[str, Level],
    granted: list[Granted],
    reserve_requests: int,
    statuses: Counter[int],
    allowed: frozenset[int],
    ttl_s: int | None,
    ended_at: float,
) -> list[Check]:
    checks: list[Check] = []
    single = scenario != "shop"
    successes = len(granted)
    if single:
        units = before[skus[0]].available
        expected = min(units, reserve_requests)
        if successes == expected:
            detail = f"{successes:,} × 201 = min({units:,} units, {reserve_requests:,} buyers)"
        elif successes > expected:
            detail = (
                f"{successes:,} × 201 for {units:,} units and {reserve_requests:,} buyers: "
                f"expected exactly {expected:,}; the service OVERSOLD by {successes - expected:,}"
            )
        else:
            detail = (
                f"{successes:,} × 201 for {units:,} units and {reserve_requests:,} buyers: "
                f"expected exactly {expected:,}; {expected - successes:,} unit(s) were "
                "refused while stock remained (or their answers were lost)"
            )
        checks.append(Check("successes = min(stock, buyers)", successes == expected, detail))

    token = admin.read.get("Authorization", "").removeprefix("Bearer ") or None
    ids = [g.reservation_id for g in granted if g.reservation_id]
    walked = [g.reservation_id for g in granted if g.action == WALKED and g.reservation_id]
    expiry_check: Check | None = None
    if scenario == "shop" and walked and ttl_s is not None:
        deadline = ended_at + ttl_s + EXPIRY_WAIT_EXTRA_S
        while True:
            seen = await fetch_reservations(host, port, token, walked)
            still = [
                i for i, (s, got) in seen.items() if s == 200 and got and got["status"] == "held"
            ]
            if not still or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        expiry_check = Check(
            "walked-away holds expired",
            not still,
            f"{len(walked):,} of {len(walked):,} expired after their {ttl_s} s TTL"
            if not still
            else f"{len(still):,} of {len(walked):,} still held {EXPIRY_WAIT_EXTRA_S:g} s past "
            f"their TTL (is the expiry sweeper running?)",
        )

    # A stable picture: the stock, then every hold, then the stock again, equal.
    for _ in range(SETTLE_TRIES):
        first = await admin.levels(skus)
        seen = await fetch_reservations(host, port, token, ids)
        after = await admin.levels(skus)
        if first == after:
            break
        await asyncio.sleep(1.0)

    missing: list[str] = []
    wrong: list[str] = []
    held: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    for hold in granted:
        if not hold.reservation_id:
            missing.append(f"order {hold.order_id}: 201 without an id")
            continue
        status, body = seen[hold.reservation_id]
        if status != 200 or body is None:
            missing.append(f"{hold.reservation_id} (order {hold.order_id}): GET answered {status}")
            continue
        lines = tuple(sorted((item["sku"], int(item["quantity"])) for item in body["items"]))
        if body["order_id"] != hold.order_id or lines != tuple(sorted(hold.lines)):
            wrong.append(f"{hold.reservation_id}: order {body['order_id']} lines {lines}")
        state = body["status"]
        if hold.action == CONFIRMED and hold.action_status == 200 and state != "confirmed":
            wrong.append(f"{hold.reservation_id}: confirmed (200) but {state}")
        if hold.action == RELEASED and hold.action_status == 200 and state != "released":
            wrong.append(f"{hold.reservation_id}: released (200) but {state}")
        for sku, quantity in lines:
            if state == "held":
                held[sku] += quantity
            elif state == "confirmed":
                confirmed[sku] += quantity
    exists_ok = not missing and not wrong
    found_count = len(granted) - len(missing)
    detail = f"{found_count:,} of {len(granted):,} found, for their orders and lines"
    if missing:
        detail = f"{len(missing):,} of {len(granted):,} missing: " + "; ".join(missing[:3])
    if wrong:
        detail += f"; {len(wrong):,} differ: " + "; ".join(wrong[:3])
    checks.append(Check("every 201's reservation exists", exists_ok, detail))

    drifted: list[str] = []
    oversold: list[str] = []
    for sku in skus:
        was, now = before[sku], after.get(sku)
        expect = Level(was.on_hand - confirmed[sku], was.reserved + held[sku])
        if now != expect:
            drifted.append(
                f"{sku}: on_hand {was.on_hand}→{now.on_hand if now else '?'} "
                f"(expected {expect.on_hand}), reserved {was.reserved}→"
                f"{now.reserved if now else '?'} (expected {expect.reserved}) with "
                f"{held[sku]} held, {confirmed[sku]} confirmed"
            )
        if held[sku] + confirmed[sku] > was.available:
            oversold.append(
                f"{sku}: {held[sku] + confirmed[sku]} units held or sold of {was.available}"
            )
    if single:
        sku = skus[0]
        now = after.get(sku)
        shown = (
            f"on_hand {before[sku].on_hand:,}→{now.on_hand:,}, reserved "
            f"{before[sku].reserved:,}→{now.reserved:,}, available {before[sku].available:,}→"
            f"{now.available:,} with {held[sku]:,} held and {confirmed[sku]:,} confirmed"
            if now
            else f"{sku} is gone"
        )
    else:
        shown = (
            f"{len(skus):,} SKUs: {sum(held.values()):,} units held, "
            f"{sum(confirmed.values()):,} confirmed"
        )
    stock_detail = shown if not drifted else f"{len(drifted)} SKU(s) off: " + "; ".join(drifted[:3])
    checks.append(Check("stock after = stock before − held − confirmed", not drifted, stock_detail))
    checks.append(
        Check(
            "never oversold",
            not oversold,
            "no SKU has more units held and sold than it had"
            if not oversold
            else "; ".join(oversold[:3]),
        )
    )
    checks.append(check_statuses(statuses, allowed))
    if expiry_check is not None:
        checks.append(expiry_check)
    return checks
