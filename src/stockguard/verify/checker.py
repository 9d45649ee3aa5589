"""Checks a history against the final state read back through the HTTP API.

The final state is what the service says at the end, once the load has stopped: every
reservation (the admin listing), each SKU's stock and its ledger (stock movements), and
the live audit (I1-I4 on the tables). The checks, each a name in the report:

``lost``       every acknowledged write is in the final state: an ``ok`` hold is a
               reservation with its order_id and items; an ``ok`` confirm ended
               ``confirmed``; an ``ok`` release ended as it answered (``released``, or
               ``expired`` when it found the hold already expired); an ``ok`` adjustment
               is exactly one movement with its reason.
``phantom``    nothing refused took effect: every reservation was asked for (an ``ok`` or
               ``info`` hold of its order_id and items), every confirmed or released
               one had a confirm or release that may have run; a refused adjustment
               left no movement; one order_id is at most one reservation.
``bank``       per SKU, units received (every movement but sales) = available + held +
               sold, with held the sum over ``held`` reservations, sold the sum over
               ``confirmed`` ones, the ledger's sales equal to sold, each confirmed line
               sold exactly once, nothing negative, and on_hand as the ledger says.
``bounds``     per SKU, units held at the end ≥ the acknowledged holds nobody tried to
               end and that cannot have expired yet, and ≤ every hold attempted; units
               sold ≥ the acknowledged confirms and ≤ every confirm attempted.
``ended-once`` no reservation was seen in two terminal states (in any answer of the
               history, or between an answer and the end), nor ``held`` again after an
               answer showed it ended.
``replay``     per order_id, every acknowledged answer names the same reservation with
               the request's items, and at most one of them created it (201).
``late-confirm`` no hold was confirmed at or after its ``expires_at``: a confirmed
               reservation's sale movements (stamped by the database clock in the
               confirm's transaction) are all earlier than its expiry.
``early-expiry`` no hold ended ``expired`` before its ``expires_at`` (with ``skew_ms`` of
               slack between the database clock and the reading's).
``internal``   no answer was a 500 (a bug by definition, docs/design.md#errors).
``audit``      the service's own audit found no violation and no oversold unit.

Indeterminate (``info``) operations may or may not have happened: every check accepts
both (Jepsen's semantics); a check only fails on what no ordering of the history's
possible effects explains.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stockguard.verify.history import History, JsonObject, Kind, Op, Outcome

TERMINAL = ("confirmed", "released", "expired")
SKEW_MS_DEFAULT = 2_000
"""Slack between the database's clock and the time the final state was read at."""


def ms_of(timestamp: str) -> int:
    """RFC 3339 (as the API writes it: UTC, milliseconds) → epoch milliseconds."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def items_of(body: Mapping[str, Any]) -> dict[str, int]:
    """``{"items": [{"sku", "quantity"}]}`` → ``{sku: quantity}``."""
    return {str(item["sku"]): int(item["quantity"]) for item in body.get("items", [])}


@dataclass
class FinalState:
    """What the service says once the load has stopped (read by ``fetch.read_final``)."""

    reservations: dict[str, JsonObject]
    """Reservation id → its body (``status``, ``items``, ``order_id``, ``expires_at``…)."""
    stock: dict[str, JsonObject]
    """SKU → ``{sku, on_hand, reserved, available, version}``."""
    movements: dict[str, list[JsonObject]]
    """SKU → its ledger (``at``, ``delta``, ``on_hand_after``, ``reason``,
    ``reservation_id``), in any order."""
    read_at_ms: int
    """When the state was read (epoch ms): holds expiring later cannot have expired."""
    audit: JsonObject | None = None
    """``GET /v1/audit``'s answer: ``ok``, ``violations``, ``oversold_units``."""


@dataclass(frozen=True)
class Anomaly:
    check: str
    detail: str


@dataclass
class Report:
    anomalies: list[Anomaly] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """The history's operations by outcome (``ok``, ``fail``, ``info``, ``total``)."""
    acknowledged_lost: int = 0
    """Acknowledged writes missing from the final state (0 for every SQL strategy)."""
    oversold_units: int = 0
    """Units held or sold beyond what was received, over every SKU (must be 0)."""
    skus: int = 0
    reservations: int = 0

    @property
    def valid(self) -> bool:
        return not self.anomalies

    def by_check(self) -> dict[str, int]:
        return dict(Counter(anomaly.check for anomaly in self.anomalies))

    def summary(self) -> str:
        verdict = "valid" if self.valid else f"INVALID {self.by_check()}"
        return (
            f"{verdict}: {self.counts.get('total', 0)} ops "
            f"({self.counts.get('ok', 0)} ok, {self.counts.get('fail', 0)} fail, "
            f"{self.counts.get('info', 0)} info), {self.reservations} reservations over "
            f"{self.skus} SKUs, acknowledged lost {self.acknowledged_lost}, "
            f"oversold {self.oversold_units}"
        )


class _Checker:
    def __init__(self, history: History, final: FinalState, skew_ms: int) -> None:
        self.history = history
        self.final = final
        self.skew_ms = skew_ms
        self.report = Report(counts=history.counts())
        self.holds_by_order: dict[str, list[Op]] = defaultdict(list)
        self.ends_by_id: dict[str, list[Op]] = defaultdict(list)
        for op in history:
            if op.kind is Kind.HOLD:
                self.holds_by_order[str(op.request["order_id"])].append(op)
            elif op.kind in (Kind.CONFIRM, Kind.RELEASE):
                self.ends_by_id[str(op.request["reservation_id"])].append(op)

    def flag(self, check: str, detail: str) -> None:
        self.report.anomalies.append(Anomaly(check, detail))

    # ------------------------------------------------------------------ checks

    def lost(self) -> None:
        reservations = self.final.reservations
        for op in self.history.of_kind(Kind.HOLD):
            if not op.ok or op.response is None:
                continue
            found = reservations.get(str(op.response.get("id")))
            if found is None:
                self.report.acknowledged_lost += 1
                self.flag(
                    "lost",
                    f"op {op.index}: hold {op.response.get('id')} "
                    f"(order {op.request['order_id']}) acknowledged, not in the final state",
                )
            elif found["order_id"] != op.request["order_id"] or items_of(found) != items_of(
                op.request
            ):
                self.report.acknowledged_lost += 1
                self.flag(
                    "lost",
                    f"op {op.index}: hold {found['id']} is stored with other "
                    f"order/items than acknowledged: {found['order_id']} {items_of(found)}",
                )
        for op in self.history.of_kind(Kind.CONFIRM, Kind.RELEASE):
            if not op.ok or op.response is None:
                continue
            reservation_id = str(op.request["reservation_id"])
            answered = str(op.response.get("status"))
            found = reservations.get(reservation_id)
            status = None if found is None else found["status"]
            if status != answered:
                self.report.acknowledged_lost += 1
                self.flag(
                    "lost",
                    f"op {op.index}: {op.kind} of {reservation_id} answered "
                    f"{answered}, final status {status}",
                )
        reasons = Counter(
            str(movement["reason"])
            for ledger in self.final.movements.values()
            for movement in ledger
        )
        for op in self.history.of_kind(Kind.ADJUST):
            reason = str(op.request["reason"])
            seen = reasons[reason]
            if op.ok and seen != 1:
                self.report.acknowledged_lost += seen == 0
                self.flag(
                    "lost",
                    f"op {op.index}: adjustment {reason!r} acknowledged, "
                    f"{seen} movements carry its reason",
                )
            elif op.outcome is Outcome.FAIL and seen:
                self.flag(
                    "phantom",
                    f"op {op.index}: adjustment {reason!r} refused, "
                    f"{seen} movements carry its reason",
                )
            elif op.outcome is Outcome.INFO and seen > 1:
                self.flag("phantom", f"op {op.index}: adjustment {reason!r} applied {seen}×")

    def phantom(self) -> None:
        orders = Counter(str(r["order_id"]) for r in self.final.reservations.values())
        for order_id, count in orders.items():
            if count > 1:
                self.flag("phantom", f"order {order_id} is {count} reservations")
        for reservation in self.final.reservations.values():
            order_id = str(reservation["order_id"])
            asked = [
                op
                for op in self.holds_by_order.get(order_id, [])
                if op.maybe and items_of(op.request) == items_of(reservation)
            ]
            if not asked:
                self.flag(
                    "phantom",
                    f"reservation {reservation['id']} (order {order_id}, "
                    f"{items_of(reservation)}) was never asked for by a hold that may "
                    "have happened",
                )
            status = reservation["status"]
            wanted = {"confirmed": Kind.CONFIRM, "released": Kind.RELEASE}.get(status)
            if wanted is not None and not any(
                op.kind is wanted and op.maybe for op in self.ends_by_id.get(reservation["id"], [])
            ):
                self.flag(
                    "phantom",
                    f"reservation {reservation['id']} ended {status} without "
                    f"a {wanted} that may have run",
                )

    def bank(self) -> None:
        held: Counter[str] = Counter()
        sold: Counter[str] = Counter()
        for reservation in self.final.reservations.values():
            for sku, quantity in items_of(reservation).items():
                if reservation["status"] == "held":
                    held[sku] += quantity
                elif reservation["status"] == "confirmed":
                    sold[sku] += quantity
        sales: dict[tuple[str, str], list[int]] = defaultdict(list)
        skus = set(self.final.stock) | set(held) | set(sold) | set(self.final.movements)
        for sku in sorted(skus):
            stock = self.final.stock.get(sku)
            ledger = self.final.movements.get(sku, [])
            received = sum(int(m["delta"]) for m in ledger if m["reason"] != "sale")
            sold_in_ledger = -sum(int(m["delta"]) for m in ledger if m["reason"] == "sale")
            for movement in ledger:
                if movement["reason"] == "sale":
                    sales[(sku, str(movement.get("reservation_id")))].append(
                        -int(movement["delta"])
                    )
            if stock is None:
                self.flag("bank", f"{sku}: held {held[sku]}, sold {sold[sku]}, but no stock row")
                continue
            on_hand, reserved = int(stock["on_hand"]), int(stock["reserved"])
            available = int(stock["available"])
            figures = (
                f"received {received}, available {available}, held {held[sku]}, "
                f"sold {sold[sku]} (ledger {sold_in_ledger}), on_hand {on_hand}, "
                f"reserved {reserved}"
            )
            if min(on_hand, reserved, available, received - sold_in_ledger) < 0:
                self.flag("bank", f"{sku}: a negative count: {figures}")
            if received != available + held[sku] + sold[sku]:
                self.flag("bank", f"{sku}: received ≠ available + held + sold: {figures}")
            if reserved != held[sku]:
                self.flag("bank", f"{sku}: reserved ≠ units of held reservations: {figures}")
            if sold_in_ledger != sold[sku]:
                self.flag(
                    "bank", f"{sku}: ledger sales ≠ units of confirmed reservations: {figures}"
                )
            if on_hand != received - sold_in_ledger:
                self.flag("bank", f"{sku}: on_hand ≠ the ledger's sum: {figures}")
            oversold = held[sku] + sold[sku] - received
            if oversold > 0:
                self.report.oversold_units += oversold
        for reservation in self.final.reservations.values():
            confirmed = reservation["status"] == "confirmed"
            for sku, quantity in items_of(reservation).items():
                entries = sales.pop((sku, str(reservation["id"])), [])
                if confirmed and entries != [quantity]:
                    self.flag(
                        "bank", f"{reservation['id']} confirmed, {sku}×{quantity} sold as {entries}"
                    )
                elif not confirmed and entries:
                    self.flag(
                        "bank",
                        f"{reservation['id']} is {reservation['status']} but "
                        f"{sku} has sales {entries} for it",
                    )
        for (sku, reservation_id), entries in sales.items():
            self.flag("bank", f"{sku}: sales {entries} name {reservation_id}, no such line")

    def bounds(self) -> None:
        read_at_ms = self.final.read_at_ms
        acked_held: dict[str, dict[str, int]] = {}
        for op in self.history.of_kind(Kind.HOLD):
            if op.ok and op.response is not None:
                reservation_id = str(op.response["id"])
                ends = self.ends_by_id.get(reservation_id, [])
                expires_ms = ms_of(str(op.response["expires_at"]))
                if not any(end.maybe for end in ends) and expires_ms > read_at_ms + self.skew_ms:
                    acked_held[reservation_id] = items_of(op.response)
        attempted: dict[str, dict[str, int]] = {}
        for order_id, ops in self.holds_by_order.items():
            for op in ops:
                if op.maybe:  # one order_id holds at most once, whichever items came first
                    for sku, quantity in items_of(op.request).items():
                        line = attempted.setdefault(order_id, {})
                        line[sku] = max(line.get(sku, 0), quantity)
        lines_by_id = {
            str(op.response["id"]): items_of(op.response)
            for op in self.history.of_kind(Kind.HOLD)
            if op.ok and op.response is not None
        }
        lines_by_id.update({rid: items_of(r) for rid, r in self.final.reservations.items()})
        confirmed_ok: dict[str, dict[str, int]] = {}
        confirmed_maybe: dict[str, dict[str, int]] = {}
        for reservation_id, ends in self.ends_by_id.items():
            lines = lines_by_id.get(reservation_id, {})
            for op in ends:
                if op.kind is not Kind.CONFIRM:
                    continue
                if op.ok:
                    confirmed_ok[reservation_id] = lines
                if op.maybe:
                    confirmed_maybe[reservation_id] = lines
        skus = set(self.final.stock)

        def total(lines: Iterable[dict[str, int]], sku: str) -> int:
            return sum(line.get(sku, 0) for line in lines)

        for sku in sorted(skus):
            stock = self.final.stock[sku]
            reserved = int(stock["reserved"])
            low, high = total(acked_held.values(), sku), total(attempted.values(), sku)
            if not low <= reserved <= high:
                self.flag(
                    "bounds",
                    f"{sku}: reserved {reserved} outside [{low}, {high}] "
                    "(acknowledged holds still held, holds attempted)",
                )
            sold = sum(
                total([items_of(r)], sku)
                for r in self.final.reservations.values()
                if r["status"] == "confirmed"
            )
            low, high = total(confirmed_ok.values(), sku), total(confirmed_maybe.values(), sku)
            if not low <= sold <= high:
                self.flag(
                    "bounds",
                    f"{sku}: sold {sold} outside [{low}, {high}] "
                    "(acknowledged confirms, confirms attempted)",
                )

    def ended_once(self) -> None:
        seen: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for op in self.history:
            body = op.response
            if not op.ok or body is None or "status" not in body or "id" not in body:
                continue
            if op.kind in (Kind.SET, Kind.ADJUST):
                continue
            seen[str(body["id"])].append(
                (op.invoke_s, op.complete_s or op.invoke_s, str(body["status"]))
            )
        for reservation_id, observations in seen.items():
            terminal = {status for _, _, status in observations if status in TERMINAL}
            final = self.final.reservations.get(reservation_id)
            if final is not None and final["status"] in TERMINAL:
                terminal.add(str(final["status"]))
            if len(terminal) > 1:
                self.flag("ended-once", f"{reservation_id} seen ended as {sorted(terminal)}")
            ended_at = min(
                (complete for _, complete, status in observations if status in TERMINAL),
                default=None,
            )
            if ended_at is not None:
                if any(invoke > ended_at and s == "held" for invoke, _, s in observations):
                    self.flag("ended-once", f"{reservation_id} seen held after it had ended")
                if final is not None and final["status"] == "held":
                    self.flag(
                        "ended-once",
                        f"{reservation_id} held at the end after an answer showed it ended",
                    )

    def replay(self) -> None:
        for order_id, ops in self.holds_by_order.items():
            answered = [op for op in ops if op.ok and op.response is not None]
            ids = {str(op.response["id"]) for op in answered if op.response is not None}
            if len(ids) > 1:
                self.flag(
                    "replay", f"order {order_id} answered as {len(ids)} reservations: {sorted(ids)}"
                )
            created = [op for op in answered if op.status == 201]
            if len(created) > 1:
                self.flag(
                    "replay",
                    f"order {order_id} created {len(created)} times (ops "
                    f"{[op.index for op in created]})",
                )
            for op in answered:
                assert op.response is not None
                if items_of(op.response) != items_of(op.request):
                    self.flag(
                        "replay",
                        f"op {op.index}: order {order_id} asked "
                        f"{items_of(op.request)}, answered {items_of(op.response)}",
                    )

    def late_confirm(self) -> None:
        sale_at: dict[str, list[int]] = defaultdict(list)
        for ledger in self.final.movements.values():
            for movement in ledger:
                if movement["reason"] == "sale" and movement.get("reservation_id"):
                    sale_at[str(movement["reservation_id"])].append(ms_of(str(movement["at"])))
        for reservation in self.final.reservations.values():
            expires_ms = ms_of(str(reservation["expires_at"]))
            late = [at for at in sale_at.get(str(reservation["id"]), []) if at >= expires_ms]
            if late:
                self.flag(
                    "late-confirm",
                    f"{reservation['id']} sold at {max(late)} ms, "
                    f"{max(late) - expires_ms} ms after its expiry",
                )
            if (
                reservation["status"] == "expired"
                and expires_ms > self.final.read_at_ms + self.skew_ms
            ):
                self.flag(
                    "early-expiry",
                    f"{reservation['id']} expired "
                    f"{expires_ms - self.final.read_at_ms} ms before its expires_at",
                )

    def internal(self) -> None:
        for op in self.history:
            if op.status == 500:
                self.flag("internal", f"op {op.index}: {op.kind} answered 500: {op.response}")

    def audit(self) -> None:
        audited = self.final.audit
        if audited is None:
            return
        for violation in audited.get("violations", []):
            self.flag("audit", str(violation))
        if int(audited.get("oversold_units", 0)):
            self.flag("audit", f"the audit counts {audited['oversold_units']} oversold units")
        self.report.oversold_units = max(
            self.report.oversold_units, int(audited.get("oversold_units", 0))
        )

    def run(self) -> Report:
        self.lost()
        self.phantom()
        self.bank()
        self.bounds()
        self.ended_once()
        self.replay()
        self.late_confirm()
        self.internal()
        self.audit()
        self.report.skus = len(self.final.stock)
        self.report.reservations = len(self.final.reservations)
        return self.report


def check(history: History, final: FinalState, *, skew_ms: int = SKEW_MS_DEFAULT) -> Report:
    """Every check of the module docstring on ``history`` and ``final``."""
    return _Checker(history, final, skew_ms).run()
