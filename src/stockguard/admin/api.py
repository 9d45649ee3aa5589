"""The small JSON endpoints the admin page's script calls, authenticated by the session.

- ``GET /admin/api/stock?sku=…`` — live figures, polled by the open page;
- ``POST /admin/api/stock/set`` — docs/design.md#seed-001: the form sends the on_hand
  it showed when it opened as ``expected_on_hand``; if stock moved meanwhile the answer
  is 409 ``stock-changed`` with the current figures, and nothing is written;
- ``POST /admin/api/stock/adjust`` — a relative change with a reason.

With a ``location`` field, ``/admin/api/stock/set`` sets that location's on hand of the
SKU (docs/locations.md), with the same compare-and-set on the location's level: a 409
``stock-changed`` then carries the location's figures as ``current`` and the SKU's as
``stock``.

Writes take form-encoded bodies (the dialogs are plain ``<form>`` elements) and need the
session's CSRF token; answers are JSON, errors included, never a 500 for bad input.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import forms, views, web
from stockguard.domain.locations import LocationLevel

LIVE_SKUS_PER_REQUEST_MAX = 100
"""SKUs one live poll may name; the page splits longer lists into several polls."""


async def live_stock(request: Request) -> Response:
    if web.current_session(request) is None:
        return web.json_refusal("signed-out", "Your session has ended; sign in again.", 401)
    skus = request.query_params.getlist("sku")
    if len(skus) > LIVE_SKUS_PER_REQUEST_MAX:
        return web.json_error(
            domain.InvalidInput("sku", f"at most {LIVE_SKUS_PER_REQUEST_MAX} per request")
        )
    try:
        levels = await web.engine_of(request).stock([domain.validate_sku(s) for s in skus])
    except domain.StockguardError as error:
        return web.json_error(error)
    found = {level.sku for level in levels}
    return web.json_answer(
        {
            "ok": True,
            "stock": [views.stock_json(level) for level in levels],
            "missing": sorted(set(skus) - found),
        }
    )


async def set_on_hand(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=True)
    if isinstance(checked, Response):
        return checked
    _session, form = checked
    try:
        sku = domain.validate_sku(forms.text(form, "sku"))
        location = forms.text(form, "location")
        if location:
            return await _set_location_on_hand(request, sku, location, form)
        on_hand = forms.required_integer(form, "on_hand")
        expected_on_hand = forms.required_integer(form, "expected_on_hand")
        level = await web.engine_of(request).set_on_hand(sku, on_hand, expected_on_hand)
    except domain.StockguardError as error:
        return web.json_error(error)
    message = (
        f"{sku}: on hand {expected_on_hand} → {level.on_hand}."
        if level.on_hand != expected_on_hand
        else f"{sku}: on hand stays {level.on_hand}."
    )
    return web.json_answer({"ok": True, "stock": views.stock_json(level), "message": message})


async def _set_location_on_hand(
    request: Request, sku: str, location: str, form: FormData
) -> Response:
    """One location's on hand, compare-and-set on that level (docs/locations.md)."""
    domain.validate_sku(location, "location")
    on_hand = forms.required_integer(form, "on_hand")
    expected_on_hand = forms.required_integer(form, "expected_on_hand")
    try:
        level = await web.engine_of(request).set_location_stock(
            sku, location, on_hand, expected_on_hand
        )
    except (domain.StockChanged, domain.BelowReserved) as error:
        at = views.level_at(error.current, location)
        body: dict[str, Any] = {
            "ok": False,
            "kind": error.kind,
            "message": _location_refusal(error, location, at),
            "stock": views.stock_json(error.current),
        }
        if at is not None:
            body["current"] = views.location_json(at)
        return web.json_answer(body, views.status_of(error))
    at = views.level_at(level, location)
    shown = at.on_hand if at is not None else on_hand
    message = (
        f"{sku} at {location}: on hand {expected_on_hand} → {shown}."
        if shown != expected_on_hand
        else f"{sku} at {location}: on hand stays {shown}."
    )
    answer: dict[str, Any] = {"ok": True, "stock": views.stock_json(level), "message": message}
    if at is not None:
        answer["level"] = views.location_json(at)
    return web.json_answer(answer)


def _location_refusal(
    error: domain.StockChanged | domain.BelowReserved,
    location: str,
    at: LocationLevel | None,
) -> str:
    sku = error.current.sku
    if isinstance(error, domain.StockChanged):
        now = f"on hand is now {at.on_hand}, " if at is not None else ""
        return (
            f"{sku} at {location}: stock changed while you were editing "
            f"({now}not {error.expected_on_hand})."
        )
    held = f"the {at.reserved} units held there" if at is not None else "the units held there"
    return f"{sku} at {location}: on hand cannot go to {error.on_hand_wanted}, below {held}."


async def adjust(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=True)
    if isinstance(checked, Response):
        return checked
    _session, form = checked
    try:
        sku = domain.validate_sku(forms.text(form, "sku"))
        delta = forms.required_integer(form, "delta")
        reason = forms.text(form, "reason")
        level = await web.engine_of(request).adjust(sku, delta, reason)
    except domain.StockguardError as error:
        return web.json_error(error)
    message = f"{sku}: {delta:+d} ({reason}); on hand now {level.on_hand}."
    return web.json_answer({"ok": True, "stock": views.stock_json(level), "message": message})


def api_routes(router: APIRouter) -> None:
    router.add_api_route("/api/stock", live_stock, methods=["GET"])
    router.add_api_route("/api/stock/set", set_on_hand, methods=["POST"])
    router.add_api_route("/api/stock/adjust", adjust, methods=["POST"])
