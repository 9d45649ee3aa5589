"""The live invariant audit that runs inside every ``serve`` process.

Every ``audit_interval_s`` it checks I1-I4 on the live database (``Engine.audit``: indexed
aggregates per table, read in one snapshot so sales going on meanwhile cannot show as a
violation) and keeps the result: ``GET /v1/audit`` shows the last one, ``POST /v1/audit``
runs one now. Violations go to ``stockguard_invariant_violations{invariant}`` (the
``StockguardInvariantViolated`` alert pages on it) and to the log at ERROR, with the SKU
and the figures. A pass that cannot run (database down) is counted and retried at the
next tick. "Never oversold" is then checked by the running service, not only by tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from stockguard import metrics
from stockguard.engine import Engine
from stockguard.service.periodic import Periodic

INVARIANTS = ("I1", "I2", "I3", "I4", "buckets")

logger = logging.getLogger("stockguard.audit")


@dataclass(frozen=True)
class AuditResult:
    at_ms: int
    duration_ms: float
    skus: int
    violations: list[str] = field(default_factory=list)
    oversold_units: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def kind_of(violation: str) -> str:
    """``"I2 SKU: …"`` → ``"I2"``; anything else (bucket checks) → ``"buckets"``."""
    head = violation.split(" ", 1)[0]
    return head if head in INVARIANTS else "buckets"


class Auditor(Periodic):
    name = "stockguard-auditor"

    def __init__(self, engine: Engine, interval_s: float) -> None:
        super().__init__(interval_s)
        self.engine = engine
        self.last: AuditResult | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        if self.interval_s > 0:  # 0: audits only when asked (POST /v1/audit)
            super().start()

    async def run_once(self) -> AuditResult:
        """One pass now (passes never overlap: a second caller waits for the first)."""
        async with self._lock:
            started_s = time.perf_counter()
            try:
                report = await self.engine.audit()
            except Exception:
                metrics.AUDITS.labels(outcome="failed").inc()
                raise
            result = AuditResult(
                at_ms=int(time.time() * 1000),
                duration_ms=round((time.perf_counter() - started_s) * 1000, 3),
                skus=report.skus,
                violations=list(report.violations),
                oversold_units=report.oversold_units,
            )
            metrics.AUDITS.labels(outcome="ok" if result.ok else "violations").inc()
            counts = dict.fromkeys(INVARIANTS, 0)
            for violation in result.violations:
                counts[kind_of(violation)] += 1
            for kind, count in counts.items():
                metrics.INVARIANT_VIOLATIONS.labels(invariant=kind).set(count)
            for violation in result.violations:
                logger.error("invariant violated: %s", violation)
            self.last = result
            return result

    async def tick(self) -> None:
        try:
            await self.run_once()
        except Exception as error:
            logger.warning("audit pass failed: %s: %s", type(error).__name__, error)
