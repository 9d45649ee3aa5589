"""The admin page's webhooks view (docs/events.md#webhooks): endpoints with their delivery
position, recent deliveries and dead letters, each dead letter with a redeliver button.

Read-only but for the redelivery, which posts a plain form (CSRF-checked like every other)
and comes back with a message; endpoints are registered through ``/v1/webhooks``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import forms, views, web
from stockguard.admin.session import Flash
from stockguard.events import state, webhooks
from stockguard.stores.sql.store import SqlStore

DELIVERIES_SHOWN = 50
DEAD_LETTERS_SHOWN = 50
REDELIVER_TIMEOUT_S = 10.0


async def webhooks_page(request: Request) -> Response:
    session = web.current_session(request)
    if session is None:
        return web.to_sign_in(request)
    store = web.engine_of(request).store
    if not isinstance(store, SqlStore):
        return web.error_page(request, "Webhooks need a SQL database.", 422)
    try:
        endpoints = await state.list_endpoints(store)
        cursors = await state.cursors(store)
        deliveries = await state.recent_deliveries(store, None, DELIVERIES_SHOWN)
        dead = await state.dead_letters(store, None, DEAD_LETTERS_SHOWN)
    except domain.StockguardError as error:
        return web.domain_error_page(request, error)
    urls = {e.id: e.url for e in endpoints}
    return web.page(
        request,
        "webhooks.html",
        {
            "endpoints": [
                {
                    "endpoint": e,
                    "cursor": cursors.get(state.webhook_sink(e.id)),
                }
                for e in endpoints
            ],
            "deliveries": [
                {"d": d, "when": views.when(d.at_ms), "url": urls.get(d.endpoint_id, "")}
                for d in deliveries
            ],
            "dead": [
                {"x": x, "when": views.when(x.dead_at_ms), "url": urls.get(x.endpoint_id, "")}
                for x in dead
            ],
        },
        session=session,
    )


async def redeliver(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    _session, form = checked
    store = web.engine_of(request).store
    back = "/admin/webhooks"
    if not isinstance(store, SqlStore):
        return web.redirect(request, back, Flash("error", "Webhooks need a SQL database."))
    endpoint_id = forms.text(form, "endpoint_id")[:36]
    try:
        event_id = int(forms.text(form, "event_id"))
    except ValueError:
        return web.redirect(request, back, Flash("error", "That is not an event id."))
    import httpx

    try:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            ok, attempt = await webhooks.redeliver(
                store, client, endpoint_id, event_id, REDELIVER_TIMEOUT_S
            )
    except domain.StockguardError as error:
        return web.redirect(request, back, Flash("error", views.explain(error)))
    if ok:
        return web.redirect(request, back, Flash("ok", f"Event {event_id} delivered."))
    why = attempt.error or "no answer"
    return web.redirect(request, back, Flash("error", f"Event {event_id} failed again: {why}"))
