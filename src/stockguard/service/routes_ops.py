"""Operations: liveness, readiness, Prometheus metrics (docs/design.md#operations, issue 3 §5)."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel

from stockguard import domain
from stockguard.metrics import StrategyEventMirror
from stockguard.service.deps import EngineDep
from stockguard.service.errors import declared

READY_CHECK_S_MAX = 5.0
"""A store that takes longer than this to answer one clock read is not ready."""
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

router = APIRouter(tags=["operations"])


class HealthOut(BaseModel):
    status: str


@router.get("/healthz", summary="The process is alive (touches nothing else)")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    responses=declared(domain.StoreUnavailable.kind),
    summary="Every store the engine needs answers (the database, and Redis when used)",
)
async def readyz(engine: EngineDep) -> HealthOut:
    try:
        async with asyncio.timeout(READY_CHECK_S_MAX):
            await engine.ping()
    except TimeoutError as slow:
        raise domain.StoreUnavailable(f"the store took over {READY_CHECK_S_MAX} s") from slow
    return HealthOut(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Prometheus metrics (summed over workers when there are several)",
)
async def metrics(request: Request) -> Response:
    mirror: StrategyEventMirror = request.app.state.strategy_events
    mirror.sync()
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
