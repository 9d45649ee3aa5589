"""Hand-made histories and final states for the checker's own tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stockguard.verify.checker import FinalState
from stockguard.verify.history import History, JsonObject, Kind, Op

T0_MS = 1_800_000_000_000
"""The database clock of these stories (epoch ms)."""


def at(ms: int) -> str:
    """Epoch ms → the API's RFC 3339 form."""
    from datetime import UTC, datetime

    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reservation(
    rid: str, order_id: str, items: dict[str, int], status: str = "held", ttl_s: int = 600
) -> JsonObject:
    return {
        "id": rid,
        "order_id": order_id,
        "customer_id": None,
        "status": status,
        "items": [{"sku": s, "quantity": q} for s, q in items.items()],
        "created_at": at(T0_MS),
        "expires_at": at(T0_MS + ttl_s * 1000),
    }


@dataclass
class Story:
    """A history and the final state it should lead to, written step by step."""

    history: History = field(default_factory=History)
    reservations: dict[str, JsonObject] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    movements: dict[str, list[JsonObject]] = field(default_factory=dict)
    audit: JsonObject = field(
        default_factory=lambda: {"ok": True, "violations": [], "oversold_units": 0}
    )

    def stock(self, sku: str, on_hand: int) -> None:
        self.received[sku] = on_hand
        self.movements.setdefault(sku, []).append(
            {
                "at": at(T0_MS),
                "delta": on_hand,
                "on_hand_after": on_hand,
                "reason": "created",
                "reservation_id": None,
            }
        )

    def op(
        self,
        kind: Kind,
        request: dict[str, Any],
        status: int | None,
        response: JsonObject | None = None,
        process: int = 0,
    ) -> Op:
        recorded = self.history.invoke(process, kind, request)
        if status is None:
            return self.history.lost(recorded, "TimeoutError: read timed out")
        return self.history.complete(recorded, status, response)

    def hold(
        self,
        rid: str,
        order_id: str,
        items: dict[str, int],
        *,
        status: int | None = 201,
        stored: bool = True,
        ttl_s: int = 600,
    ) -> JsonObject:
        body = self.reservations.get(rid) or reservation(rid, order_id, items, ttl_s=ttl_s)
        request = {"order_id": order_id, "items": body["items"], "ttl_seconds": ttl_s}
        answer = body if status in (200, 201) else {"type": "out-of-stock", "status": status}
        self.op(Kind.HOLD, request, status, answer if status is not None else None)
        if stored and rid not in self.reservations:
            self.reservations[rid] = dict(body)
        return body

    def end(
        self,
        rid: str,
        kind: Kind,
        status: int | None,
        *,
        final: str | None = None,
        sold_at_ms: int = T0_MS + 1_000,
    ) -> None:
        target = "confirmed" if kind is Kind.CONFIRM else "released"
        stored = self.reservations[rid]
        answer = dict(stored, status=target) if status == 200 else None
        self.op(kind, {"reservation_id": rid}, status, answer)
        new_status = final if final is not None else (target if status == 200 else None)
        if new_status is not None:
            self.reservations[rid] = dict(stored, status=new_status)
            if new_status == "confirmed":
                for item in stored["items"]:
                    self.movements[item["sku"]].append(
                        {
                            "at": at(sold_at_ms),
                            "delta": -item["quantity"],
                            "on_hand_after": 0,
                            "reason": "sale",
                            "reservation_id": rid,
                        }
                    )

    def final(self) -> FinalState:
        held: dict[str, int] = {}
        sold: dict[str, int] = {}
        for r in self.reservations.values():
            for item in r["items"]:
                if r["status"] == "held":
                    held[item["sku"]] = held.get(item["sku"], 0) + item["quantity"]
                if r["status"] == "confirmed":
                    sold[item["sku"]] = sold.get(item["sku"], 0) + item["quantity"]
        stock = {}
        for sku, received in self.received.items():
            on_hand = received - sold.get(sku, 0)
            reserved = held.get(sku, 0)
            stock[sku] = {
                "sku": sku,
                "on_hand": on_hand,
                "reserved": reserved,
                "available": on_hand - reserved,
                "version": 1,
            }
        return FinalState(
            reservations={k: dict(v) for k, v in self.reservations.items()},
            stock=stock,
            movements={k: list(v) for k, v in self.movements.items()},
            read_at_ms=T0_MS + 5_000,
            audit=dict(self.audit),
        )
