"""The locations page (``/admin/locations``): every location, a form to create one, and
per location a form to rename or reprioritise it and a button to deactivate or
reactivate it (docs/locations.md).

Plain server-rendered forms that post and redirect back with a message (as the kits
page): a location changes now and then, and none of its fields moves under the admin's
eyes. Refusals are drawn on the page at their status, never a 500: a code taken (409), a
field out of its limits or deactivating the default location (422), a location that is
no more (404).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import forms, views, web
from stockguard.admin.session import Flash, Session
from stockguard.domain.locations import LOCATION_PRIORITY_MAX, LOCATIONS_MAX


async def locations_page(request: Request) -> Response:
    session = web.current_session(request)
    if session is None:
        return web.to_sign_in(request)
    return await _page(request, session)


async def _page(
    request: Request,
    session: Session,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    row_error: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    try:
        found = await web.engine_of(request).list_locations()
    except domain.StockguardError as failure:
        return web.domain_error_page(request, failure)
    return web.page(
        request,
        "locations.html",
        {
            "locations": found,
            "location_form": form or {"code": "", "name": "", "priority": "0"},
            "location_error": error,
            "row_error": row_error,
            "priority_max": LOCATION_PRIORITY_MAX,
            "locations_max": LOCATIONS_MAX,
            "default_code": domain.DEFAULT_LOCATION_CODE,
        },
        session=session,
        status_code=status_code,
    )


def _renamed(error: domain.StockguardError) -> domain.StockguardError:
    """``name`` is a location's here, not a product's (views.field_label)."""
    if isinstance(error, domain.InvalidInput) and error.field == "name":
        return domain.InvalidInput("location_name", error.reason)
    return error


async def create_location(request: Request) -> Response:
    """``POST /admin/locations``: a new location."""
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    given: dict[str, str] = {}
    try:
        given = {name: forms.text(form, name) for name in ("code", "name", "priority")}
        priority = forms.integer(form, "priority", required=False)
        created = await web.engine_of(request).create_location(
            given["code"], given["name"], 0 if priority is None else priority
        )
    except domain.StockguardError as error:
        return await _page(
            request,
            session,
            form={"code": "", "name": "", "priority": "0", **given},
            error=views.explain(_renamed(error)),
            status_code=views.status_of(error),
        )
    message = f"Location {created.code} ({created.name}) created at priority {created.priority}."
    return web.redirect(request, "/admin/locations", Flash("ok", message))


async def update_location(request: Request) -> Response:
    """``POST /admin/locations/update``: rename and reprioritise (``name``, ``priority``),
    or deactivate / reactivate (``active`` = ``false`` / ``true``), one location."""
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    code = ""
    try:
        code = domain.validate_sku(forms.text(form, "code"), "code")
        active_text = forms.text(form, "active")
        if active_text not in ("", "true", "false"):
            raise domain.InvalidInput("active", "must be true or false")
        name = forms.text(form, "name") if "name" in form else None
        priority = forms.integer(form, "priority", required=False) if "priority" in form else None
        active = None if not active_text else active_text == "true"
        changed = await web.engine_of(request).update_location(
            code, name=name, priority=priority, active=active
        )
    except domain.StockguardError as error:
        return await _page(
            request,
            session,
            error=None if code else views.explain(error),
            row_error=(code, views.explain(_renamed(error))) if code else None,
            status_code=views.status_of(error),
        )
    if active is not None:
        state = "sells again" if changed.active else "is deactivated: it sells nothing now"
        message = f"Location {changed.code} {state}."
    else:
        message = f"Location {changed.code}: {changed.name}, priority {changed.priority}."
    return web.redirect(request, "/admin/locations", Flash("ok", message))
