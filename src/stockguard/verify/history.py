"""Operation records of one run: what each client asked, when, and what came back.

Every operation has an invoke time and (once answered) a complete time, both from
``time.monotonic()`` in the recording process, so overlap between operations is exact
within one recorder. The outcome follows Jepsen:

* ``ok``: the service answered success (2xx). The effect happened and must persist.
* ``fail``: a definite refusal (4xx: out of stock, invalid state, expired, 429
  overloaded…). Nothing was written.
* ``info``: indeterminate. The client timed out, the connection was lost, or the service
  answered 5xx (503 store-unavailable after a lost commit, for one): the operation may or
  may not have taken effect, and a checker must accept both.

A history is saved as JSON lines (one operation per line) so that a long run can be
checked again later (``stockguard verify check``).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class Kind(enum.StrEnum):
    """The operations a history records (the HTTP routes they stand for)."""

    HOLD = "hold"  # POST /v1/reservations
    CONFIRM = "confirm"  # POST /v1/reservations/{id}/confirm
    RELEASE = "release"  # POST /v1/reservations/{id}/release
    READ = "read"  # GET /v1/reservations/{id}
    SET = "set"  # PUT /v1/stock/{sku}
    ADJUST = "adjust"  # POST /v1/stock/{sku}/adjustments


def outcome_of_status(status: int) -> Outcome:
    """A status code's outcome: 2xx ok, 4xx a definite refusal, anything else unknown."""
    if 200 <= status < 300:
        return Outcome.OK
    if 400 <= status < 500:
        return Outcome.FAIL
    return Outcome.INFO


@dataclass
class Op:
    """One operation: invoked at ``invoke_s``, completed at ``complete_s`` (None while in
    flight, and for ever if the recorder died first: then it counts as ``info``)."""

    index: int
    process: int
    """The client (a logical process in Jepsen's sense: one operation at a time)."""
    kind: Kind
    request: JsonObject
    """``order_id``/``items``/``ttl_seconds`` for a hold; ``reservation_id`` for confirm,
    release and read; ``sku`` with ``on_hand``/``expected_on_hand`` or ``delta``/``reason``
    for the admin writes."""
    invoke_s: float
    complete_s: float | None = None
    outcome: Outcome = Outcome.INFO
    status: int | None = None
    """The HTTP status, when an answer came."""
    response: JsonObject | None = None
    """The answer's JSON body (a reservation, a stock level or a problem)."""
    error: str | None = None
    """Why there is no answer (timeout, connection lost), for ``info`` without a status."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def maybe(self) -> bool:
        """The operation may have taken effect: ok or indeterminate."""
        return self.outcome is not Outcome.FAIL

    def to_json(self) -> JsonObject:
        return asdict(self)

    @classmethod
    def from_json(cls, data: JsonObject) -> Op:
        return cls(
            index=int(data["index"]),
            process=int(data["process"]),
            kind=Kind(data["kind"]),
            request=dict(data["request"]),
            invoke_s=float(data["invoke_s"]),
            complete_s=None if data.get("complete_s") is None else float(data["complete_s"]),
            outcome=Outcome(data.get("outcome", "info")),
            status=data.get("status"),
            response=data.get("response"),
            error=data.get("error"),
        )


@dataclass
class History:
    """Every operation of a run, in invoke order."""

    ops: list[Op] = field(default_factory=list)
    meta: JsonObject = field(default_factory=dict)
    """What ran (backend, strategy, fault, counts), saved with the operations."""

    def invoke(self, process: int, kind: Kind, request: JsonObject) -> Op:
        op = Op(len(self.ops), process, kind, dict(request), time.monotonic())
        self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, status: int, response: JsonObject | None) -> Op:
        op.complete_s = time.monotonic()
        op.status = status
        op.response = response
        op.outcome = outcome_of_status(status)
        return op

    @staticmethod
    def lost(op: Op, error: BaseException | str) -> Op:
        """The operation ended without an answer: indeterminate."""
        op.complete_s = time.monotonic()
        op.outcome = Outcome.INFO
        op.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return op

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def of_kind(self, *kinds: Kind) -> list[Op]:
        return [op for op in self.ops if op.kind in kinds]

    def counts(self) -> dict[str, int]:
        """Operations by outcome (``ok``, ``fail``, ``info``) and in total."""
        counted = {outcome.value: 0 for outcome in Outcome}
        for op in self.ops:
            counted[op.outcome.value] += 1
        counted["total"] = len(self.ops)
        return counted

    def save(self, path: Path) -> None:
        with path.open("w") as out:
            out.write(json.dumps({"meta": self.meta}) + "\n")
            for op in self.ops:
                out.write(json.dumps(op.to_json()) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        with path.open() as lines:
            for line in lines:
                data = json.loads(line)
                if "meta" in data and "index" not in data:
                    history.meta = dict(data["meta"])
                else:
                    history.ops.append(Op.from_json(data))
        return history
