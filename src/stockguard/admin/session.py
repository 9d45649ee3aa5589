"""Admin sign-in: a signed, expiring session cookie, and the CSRF token bound to it.

The session is stateless on purpose. The cookie carries its expiry and the session's
CSRF token, signed with HMAC-SHA256 under a key derived from the admin token, so:

- every worker process of ``stockguard serve`` accepts the same cookie without any
  shared session store (workers already share the admin token through the environment);
- changing the admin token signs every session out (the old signatures stop verifying);
- a cookie cannot be forged or extended without the admin token.

The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (no other site
can make the browser send it), ``Secure`` when the page was served over https (directly,
or through a proxy trusted by ``forwarded_allow_ips``: ``served_over_https``), and
scoped to ``/admin``. Every state-changing request must also carry the session's CSRF
token (a hidden form field, or the ``X-CSRF-Token`` header from the page's script),
compared in constant time, and must not come from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

SESSION_TTL_S = 8 * 3600
"""A working day: long enough not to interrupt an admin, short enough to bound a leak."""
FLASH_TTL_S = 60
"""A flash message only has to survive one redirect."""
COOKIE_PATH = "/admin"
SESSION_COOKIE = "stockguard_admin"
FLASH_COOKIE = "stockguard_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_LEN_MAX = 1_024
"""Longer cookie values are refused before any decoding."""
FLASH_TEXT_LEN_MAX = 300

_KEY_LABEL = b"stockguard admin session v1"

FlashKind = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class Session:
    csrf_token: str
    expires_at_s: int


@dataclass(frozen=True, slots=True)
class Flash:
    """A one-shot notice shown on the page a form redirected to."""

    kind: FlashKind
    text: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and verifies admin cookies under a key derived from the admin token."""

    def __init__(self, admin_token: str) -> None:
        self._token_digest = hashlib.sha256(admin_token.encode()).digest()
        self._key = hmac.new(admin_token.encode(), _KEY_LABEL, hashlib.sha256).digest()

    def token_matches(self, candidate: str) -> bool:
        """Constant time whatever the candidate: digests have one length, whatever is typed."""
        given = hashlib.sha256(candidate.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(given, self._token_digest)

    def _signature(self, purpose: str, payload: str) -> str:
        message = f"{purpose}\n{payload}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def _seal(self, purpose: str, payload: str) -> str:
        return f"{payload}.{self._signature(purpose, payload)}"

    def _open(self, purpose: str, value: str | None) -> str | None:
        if not value or len(value) > COOKIE_LEN_MAX or "." not in value:
            return None
        payload, _, signature = value.rpartition(".")
        expected = self._signature(purpose, payload)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return payload

    # ------------------------------------------------------------------ sessions

    def new_session(self, now_s: int) -> tuple[Session, str]:
        """A fresh session (new CSRF token) and its cookie value."""
        session = Session(secrets.token_urlsafe(32), now_s + SESSION_TTL_S)
        return session, self._seal("session", f"{session.expires_at_s}.{session.csrf_token}")

    def read_session(self, value: str | None, now_s: int) -> Session | None:
        """The session of a cookie that is genuine and not expired, else None."""
        payload = self._open("session", value)
        if payload is None:
            return None
        expires_text, _, csrf_token = payload.partition(".")
        if not expires_text.isdigit() or not csrf_token:
            return None
        expires_at_s = int(expires_text)
        if expires_at_s <= now_s:
            return None
        return Session(csrf_token, expires_at_s)

    # ------------------------------------------------------------------ flash

    def seal_flash(self, flash: Flash, now_s: int) -> str:
        body = json.dumps(
            {"k": flash.kind, "t": flash.text[:FLASH_TEXT_LEN_MAX], "e": now_s + FLASH_TTL_S}
        )
        return self._seal("flash", _b64(body.encode()))

    def open_flash(self, value: str | None, now_s: int) -> Flash | None:
        payload = self._open("flash", value)
        if payload is None:
            return None
        try:
            body = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        kind, text, expires_at_s = body.get("k"), body.get("t"), body.get("e")
        if not isinstance(expires_at_s, int) or expires_at_s <= now_s:
            return None
        if kind not in ("ok", "error") or not isinstance(text, str):
            return None
        return Flash("ok" if kind == "ok" else "error", text)


# ---------------------------------------------------------------------------- requests


def csrf_matches(session: Session, submitted: str | None) -> bool:
    if not submitted:
        return False
    return hmac.compare_digest(submitted.encode(), session.csrf_token.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    Browsers send ``Origin`` on every POST; its host must be the one the page was served
    from. (Scheme is not compared: behind a TLS-terminating proxy the app sees http.)
    A request without ``Origin`` is not a cross-site browser form, so it passes here and
    still needs the CSRF token.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


def served_over_https(request: Request) -> bool:
    """The browser reached us over TLS: the connection itself, or a proxy listed in
    ``Settings.forwarded_allow_ips`` (``app.state.trusted_proxies``) that says so in
    ``X-Forwarded-Proto``. The header from anyone else is ignored: a client must not
    be able to talk the service into believing it (docs/deploy.md, "TLS")."""
    if request.url.scheme == "https":
        return True
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = getattr(
        request.app.state, "trusted_proxies", ()
    )
    if not proxies or request.client is None:
        return False
    forwarded = request.headers.get("x-forwarded-proto", "")
    if forwarded.split(",")[0].strip().lower() != "https":
        return False
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(peer in network for network in proxies)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=served_over_https(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=served_over_https(request),
    )
