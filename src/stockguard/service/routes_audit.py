"""The live invariant audit over HTTP (admin): the last result, or a pass run now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from stockguard.service.auditor import Auditor, AuditResult
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import Timestamp, from_ms

api_router = APIRouter(tags=["operations"])
"""Nothing here is for the API token."""
admin_router = APIRouter(tags=["operations"])


class AuditOut(BaseModel):
    at: Timestamp
    duration_ms: float
    skus: int
    ok: bool
    violations: list[str]
    oversold_units: int

    @classmethod
    def of(cls, result: AuditResult) -> AuditOut:
        return cls(
            at=from_ms(result.at_ms),
            duration_ms=result.duration_ms,
            skus=result.skus,
            ok=result.ok,
            violations=result.violations,
            oversold_units=result.oversold_units,
        )


def _auditor(request: Request) -> Auditor:
    auditor: Auditor = request.app.state.auditor
    return auditor


@admin_router.get(
    "/v1/audit",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="The last live audit of I1-I4 (runs one first if none has run) (admin)",
)
async def last_audit(request: Request) -> AuditOut:
    auditor = _auditor(request)
    return AuditOut.of(auditor.last or await auditor.run_once())


@admin_router.post(
    "/v1/audit",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Audit I1-I4 now, on the live database (admin)",
)
async def audit_now(request: Request) -> AuditOut:
    return AuditOut.of(await _auditor(request).run_once())
