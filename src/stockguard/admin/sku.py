"""The SKU page (``/admin/sku?sku=…``): its stock row, its stock per location, its stock
policy, its ledger.

Stock per location (docs/locations.md) is a table of the SKU's level at every location;
each row's on hand is edited in the stock edit's dialog, with the same compare-and-set on
that location's level and the same "stock changed while you were editing" dialog
(``api.set_on_hand`` with a ``location``).

The stock policy card (docs/design.md#stock-policy) is a plain server-rendered form that
posts to ``/admin/sku/policy`` and redirects back with a message (post/redirect/get, as
the kits page does): a policy is four numbers changed now and then, not a figure that
moves under the admin's eyes, so it needs no dialog or script. What it shares with the
stock edit is the compare-and-set of docs/design.md#seed-001: the form carries the
policy it showed in hidden ``expected_*`` fields, and the engine saves only if the
stored policy is still that one. Otherwise nothing is written and the page comes back
(409) with a "policy changed while you were editing" warning showing the policy then
and now and the values the admin meant to save, in a form whose ``expected_*`` are now
the current policy: re-applying is itself a compare-and-set against what was shown.

Refusals are answered on the page, never a 500: 422 invalid input names the field, 409
below-reserved (an allowance cut below the units already held beyond on_hand,
docs/design.md#backorders) says what stands in the way.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import forms, views, web
from stockguard.admin.session import Flash, Session
from stockguard.domain import Status

LEDGER_PAGE = 50

POLICY_HELP = {
    "safety_stock": "Units on hand never sold (display, damaged): available leaves them out.",
    "backorder_max": "Units sold beyond on hand; confirmed, on hand goes below 0 until a "
    "restock. 0: never.",
    "customer_max": "Units one customer may hold and have bought; holds must name the "
    "customer. Empty: no cap.",
    "low_stock_threshold": "stock.low events fire when available falls to or below it. Empty: off.",
}
"""One line per policy field, shown under it: why an admin would set it
(docs/design.md#safety-stock, #backorders, #per-customer-caps, #stock-policy)."""

POLICY_EMPTY = {"customer_max": "no cap", "low_stock_threshold": "off"}
"""How an empty (None) optional field reads in the card's figures."""


async def sku_page(request: Request) -> Response:
    session = web.current_session(request)
    if session is None:
        return web.to_sign_in(request)
    try:
        sku = domain.validate_sku(request.query_params.get("sku", ""))
    except domain.StockguardError as error:
        return web.domain_error_page(request, error)
    return await _page(request, session, sku)


async def _page(
    request: Request,
    session: Session,
    sku: str,
    *,
    policy_form: forms.PolicyForm | None = None,
    policy_error: str | None = None,
    conflict: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    """The page; a refused policy form is drawn again as typed, with why, at the status
    of the refusal (so a script or test sees 409/422 rather than a 200 that hides it)."""
    engine = web.engine_of(request)
    cursor = request.query_params.get("cursor") or None
    try:
        level = await engine.stock_of(sku)
        policy = await engine.get_policy(sku)
        movements, next_cursor = await engine.movements(sku, limit=LEDGER_PAGE, cursor=cursor)
        held, _ = await engine.list_reservations(status=Status.HELD, sku=sku, limit=1)
        places = {place.code: place for place in await engine.list_locations()}
    except domain.StockguardError as error:
        return web.domain_error_page(request, error)
    return web.page(
        request,
        "sku.html",
        {
            "level": level,
            "state": views.stock_state(level.available),
            "location_rows": views.location_rows(level, places),
            "other_locations": [
                (place.code, place.name)
                for place in places.values()
                if views.level_at(level, place.code) is None
            ],
            "movements": [
                {
                    "when": views.when(m.at_ms),
                    "delta": m.delta,
                    "on_hand_after": m.on_hand_after,
                    "reason": views.movement_reason(m.reason, m.reservation_id),
                    "reservation_id": m.reservation_id or "",
                }
                for m in movements
            ],
            "next_cursor": next_cursor,
            "first_page": cursor is None,
            "has_held": bool(held),
            "policy": _policy_figures(policy),
            "policy_form": policy_form or forms.PolicyForm.showing(policy),
            "policy_error": policy_error,
            "policy_conflict": conflict,
            "policy_fields": [
                (name, views.field_label(name), POLICY_HELP[name]) for name in forms.POLICY_FIELDS
            ],
            "policy_empty": POLICY_EMPTY,
        },
        session=session,
        status_code=status_code,
    )


def _policy_figures(policy: domain.Policy) -> dict[str, str]:
    """The stored policy as the card shows it: empty optional fields in words."""
    texts = forms.PolicyForm.texts_of(policy)
    return {name: texts[name] or POLICY_EMPTY.get(name, "0") for name in forms.POLICY_FIELDS}


def _shown(texts: dict[str, str] | Any) -> dict[str, str]:
    return {
        name: str(texts.get(name, "")) or POLICY_EMPTY.get(name, "—")
        for name in forms.POLICY_FIELDS
    }


async def save_policy(request: Request) -> Response:
    """``POST /admin/sku/policy``: a compare-and-set write of the whole policy."""
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    try:
        sku = domain.validate_sku(forms.text(form, "sku"))
    except domain.StockguardError as error:
        return web.domain_error_page(request, error)
    try:
        given = forms.PolicyForm.read(form)
    except domain.InvalidInput as error:  # a field longer than any form field may be
        return await _page(
            request, session, sku, policy_error=views.explain(error), status_code=422
        )
    engine = web.engine_of(request)
    wanted: domain.Policy | None = None
    try:
        wanted = given.policy()
        expected = given.expected_policy()
        saved = await engine.set_policy(sku, wanted, expected)
    except domain.PolicyChanged as error:
        current = (
            error.current
            if isinstance(error.current, domain.Policy)
            else await engine.get_policy(sku)
        )
        now = forms.PolicyForm.texts_of(current)
        return await _page(
            request,
            session,
            sku,
            policy_form=forms.PolicyForm(values=given.values, expected=now),
            conflict={
                "was": _shown(given.expected),
                "now": _shown(now),
                "yours": _shown(given.values),
            },
            status_code=views.status_of(error),
        )
    except domain.UnknownSku as error:
        return web.domain_error_page(request, error)
    except domain.BelowReserved as error:
        assert wanted is not None, "only the write refuses a cut"
        return await _page(
            request,
            session,
            sku,
            policy_form=given,
            policy_error=views.explain_backorder_cut(error, wanted.backorder_max),
            status_code=views.status_of(error),
        )
    except domain.StockguardError as error:
        return await _page(
            request,
            session,
            sku,
            policy_form=given,
            policy_error=views.explain(error),
            status_code=views.status_of(error),
        )
    message = _saved_message(sku, expected, saved)
    return web.redirect(
        request, views.admin_url("/admin/sku", sku=sku) + "#policy", Flash("ok", message)
    )


def _saved_message(sku: str, before: domain.Policy, after: domain.Policy) -> str:
    was, now = _shown(forms.PolicyForm.texts_of(before)), _shown(forms.PolicyForm.texts_of(after))
    changes = [
        f"{views.field_label(name).lower()} {was[name]} → {now[name]}"
        for name in forms.POLICY_FIELDS
        if was[name] != now[name]
    ]
    if not changes:
        return f"{sku}: stock policy unchanged."
    return f"{sku}: stock policy saved: {', '.join(changes)}."
