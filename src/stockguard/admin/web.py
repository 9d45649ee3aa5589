"""HTTP plumbing shared by the admin pages and the page's JSON endpoints.

Who is signed in, the CSRF and origin checks every state-changing request passes, the
security headers every answer carries, and the small set of ways to answer (a page, a
redirect with a flash message, JSON). Route modules only decide *what* to answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from pydantic import SecretStr
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from stockguard import domain
from stockguard.admin import forms, views
from stockguard.admin.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    FLASH_COOKIE,
    FLASH_TTL_S,
    SESSION_COOKIE,
    Flash,
    Session,
    Signer,
    clear_cookie,
    csrf_matches,
    same_origin,
    set_cookie,
)
from stockguard.engine import Engine

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.globals["admin_url"] = views.admin_url
TEMPLATES.env.globals["backorder_of"] = views.backorder_of

LIVE_POLL_INTERVAL_MS = 1_500
"""How often an open page asks for fresh figures (see docs/admin.md: why polling)."""

SECURITY_HEADERS: Mapping[str, str] = {
    # Scripts and styles only from our own static files: no inline code can run, so an
    # injected string in a product name can never become script.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def now_s() -> int:
    return int(time.time())


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def signer_of(request: Request) -> Signer | None:
    """None when the service runs without an admin token: nobody can sign in then."""
    token: SecretStr | None = request.app.state.settings.admin_token
    if token is None or not token.get_secret_value():
        return None
    return Signer(token.get_secret_value())


def current_session(request: Request) -> Session | None:
    signer = signer_of(request)
    if signer is None:
        return None
    return signer.read_session(request.cookies.get(SESSION_COOKIE), now_s())


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    session: Session | None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A rendered page; consumes the pending flash message, if any."""
    signer = signer_of(request)
    flash = (
        signer.open_flash(request.cookies.get(FLASH_COOKIE), now_s())
        if signer is not None
        else None
    )
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf_field": CSRF_FIELD,
            "csrf_token": session.csrf_token if session else "",
            "flash": flash,
            "poll_interval_ms": LIVE_POLL_INTERVAL_MS,
            "low_stock_max": views.LOW_STOCK_AVAILABLE_MAX,
            "state_labels": views.STATE_LABELS,
            **context,
        },
        status_code=status_code,
        headers=dict(headers or {}),
    )
    if FLASH_COOKIE in request.cookies:
        clear_cookie(request, response, FLASH_COOKIE)
    return secured(response)


def error_page(
    request: Request, message: str, status_code: int, *, retry_after_s: int | None = None
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    return page(
        request,
        "error.html",
        {"message": message, "status_code": status_code},
        session=current_session(request),
        status_code=status_code,
        headers=headers,
    )


def domain_error_page(request: Request, error: domain.StockguardError) -> Response:
    return error_page(
        request,
        views.explain(error),
        views.status_of(error),
        retry_after_s=views.retry_after_s(error),
    )


def safe_return_path(candidate: str) -> str:
    """Only a path inside /admin: a form can never send the admin elsewhere."""
    inside = candidate == "/admin" or candidate.startswith(("/admin?", "/admin/", "/admin#"))
    if inside and "//" not in candidate and "\\" not in candidate:
        return candidate
    return "/admin"


def redirect(request: Request, path: str, flash: Flash | None = None) -> Response:
    response = RedirectResponse(safe_return_path(path), status_code=303)
    signer = signer_of(request)
    if flash is not None and signer is not None:
        set_cookie(request, response, FLASH_COOKIE, signer.seal_flash(flash, now_s()), FLASH_TTL_S)
    return secured(response)


def to_sign_in(request: Request, why: str | None = None) -> Response:
    return redirect(request, "/admin/sign-in", Flash("error", why) if why else None)


def json_answer(
    body: Mapping[str, Any], status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return secured(JSONResponse(dict(body), status_code=status_code, headers=dict(headers or {})))


def json_error(error: domain.StockguardError, **extra: Any) -> Response:
    body: dict[str, Any] = {"ok": False, "kind": error.kind, "message": views.explain(error)}
    if isinstance(error, domain.InvalidInput):
        body["field"] = error.field
    if isinstance(error, domain.StockChanged):
        body["current"] = views.stock_json(error.current)
        body["expected_on_hand"] = error.expected_on_hand
    if isinstance(error, domain.BelowReserved):
        body["current"] = views.stock_json(error.current)
    retry = views.retry_after_s(error)
    headers = {"Retry-After": str(retry)} if retry else None
    return json_answer({**body, **extra}, views.status_of(error), headers)


def json_refusal(kind: str, message: str, status_code: int) -> Response:
    return json_answer({"ok": False, "kind": kind, "message": message}, status_code)


async def checked_form(
    request: Request, *, wants_json: bool
) -> tuple[Session, FormData] | Response:
    """The session and form of a state-changing request, or the answer refusing it.

    Refused, with nothing written: no valid session (401, or back to sign-in), a request
    from another origin or without this session's CSRF token (403), a form that is not
    one (400).
    """
    session = current_session(request)
    if session is None:
        why = "Your session has ended; sign in again. Nothing was changed."
        if wants_json:
            return json_refusal("signed-out", why, 401)
        return to_sign_in(request, why)

    def refuse(kind: str, message: str, status_code: int) -> Response:
        if wants_json:
            return json_refusal(kind, message, status_code)
        return error_page(request, message, status_code)

    forged = "This form came from another page or has expired; reload and try again."
    if not same_origin(request):
        return refuse("csrf", forged, 403)
    try:
        form = await request.form(max_files=0, max_fields=forms.FORM_FIELDS_MAX)
    except HTTPException:
        return refuse("bad-form", "The form could not be read; nothing was changed.", 400)
    submitted = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not csrf_matches(session, submitted if isinstance(submitted, str) else None):
        return refuse("csrf", forged, 403)
    return session, form


def start_session(request: Request, signer: Signer) -> Response:
    session, cookie = signer.new_session(now_s())
    response = redirect(request, "/admin")
    set_cookie(request, response, SESSION_COOKIE, cookie, session.expires_at_s - now_s())
    return response


def end_session(request: Request) -> Response:
    response = redirect(request, "/admin/sign-in", Flash("ok", "Signed out."))
    clear_cookie(request, response, SESSION_COOKIE)
    return response
