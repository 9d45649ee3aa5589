"""The drop view: one SKU's sale as it happens, for the person running it (issue 17).

``GET /admin/drop?sku=…`` is the page: four charts (reservations/s, refusals/s, available
units, p95 latency) drawn by ``static/drop.js`` from ``GET /admin/api/drop?sku=…``,
which it polls every ``DROP_POLL_INTERVAL_MS``. The figures are the service's own, not a
dashboard's: the per-SKU counters the engine keeps for watched SKUs, summed over every
worker as ``/metrics`` sums them (``service/watch.py``), and the SKU's stock as the
strategy reads it. Each answer carries running totals and the time they were read; the
page turns two answers into rates and the latency buckets' increase into a p95, the way
Prometheus's ``rate`` and ``histogram_quantile`` would, so no worker keeps history and it
does not matter which worker answers a poll.

Asking for a SKU's figures is what makes the workers count it: a SKU nobody watches costs
nothing and adds no series (see ``service/watch.py`` for the bound).
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import views, web
from stockguard.service.watch import SkuFigures, SkuWatch, WatchFull

DROP_POLL_INTERVAL_MS = 1_000
"""How often the drop view asks for figures: one point a second on its charts."""
DROP_WINDOW_POINTS = 120
"""Points each chart keeps: the last two minutes."""
SUCCEEDED = frozenset({"held", "replayed"})
"""Outcomes that are not refusals (a replay answers an order already held)."""


def watch_of(request: Request) -> SkuWatch:
    watch: SkuWatch = request.app.state.watch
    return watch


async def drop_page(request: Request) -> Response:
    session = web.current_session(request)
    if session is None:
        return web.to_sign_in(request)
    given = request.query_params.get("sku", "").strip()
    level = None
    notice = None
    if given:
        try:
            level = await web.engine_of(request).stock_of(domain.validate_sku(given))
        except domain.StockguardError as error:
            notice = views.explain(error)
    settings = request.app.state.settings
    return web.page(
        request,
        "drop.html",
        {
            "sku": level.sku if level else given[: domain.SKU_LEN_MAX],
            "level": level,
            "notice": notice,
            "workers": settings.workers,
            "drop_poll_interval_ms": DROP_POLL_INTERVAL_MS,
            "window_points": DROP_WINDOW_POINTS,
            "state": views.stock_state(level.available) if level else None,
        },
        session=session,
        status_code=200 if notice is None else 404,
    )


async def drop_figures(request: Request) -> Response:
    """One reading of a SKU's drop figures; marks the SKU watched for a while longer."""
    if web.current_session(request) is None:
        return web.json_refusal("signed-out", "Your session has ended; sign in again.", 401)
    try:
        sku = domain.validate_sku(request.query_params.get("sku", ""))
        level = await web.engine_of(request).stock_of(sku)
    except domain.StockguardError as error:
        return web.json_error(error)
    watch = watch_of(request)
    try:
        watch.watch(sku)
    except WatchFull:
        return web.json_refusal(
            "watch-full",
            f"This serve has already counted {watch.skus_max} different SKUs, the most one "
            "run may (each adds metric series until it stops); watch one of those, or "
            "restart serve to watch others.",
            409,
        )
    figures = watch.figures(sku)
    return web.json_answer(
        figures_json(figures, level, time.time(), request.app.state.settings.workers)
    )


def figures_json(
    figures: SkuFigures, level: domain.StockLevel, at_s: float, workers: int
) -> dict[str, Any]:
    """The answer the page reads: totals since counting began, and when they were read."""
    outcomes = {kind: round(count) for kind, count in sorted(figures.outcomes.items())}
    finite = [bound for bound in figures.latency_le_s if math.isfinite(bound)]
    return {
        "ok": True,
        "sku": level.sku,
        "at_ms": round(at_s * 1000),
        "stock": views.stock_json(level),
        "held": outcomes.get("held", 0),
        "replayed": outcomes.get("replayed", 0),
        "refused": sum(count for kind, count in outcomes.items() if kind not in SUCCEEDED),
        "outcomes": outcomes,
        "latency": {
            # JSON has no infinity: the last count is the +Inf bucket's (every request)
            "le_s": finite,
            "counts": [round(count) for count in figures.latency_counts],
            "sum_s": figures.latency_sum_s,
        },
        "counting": figures.counting,
        "workers": workers,
    }
