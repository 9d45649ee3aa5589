"""Bearer tokens (docs/design.md#auth): the admin token opens everything, the API token opens the
reservation and stock-read routes, which are open to all when no API token is set.

Tokens are compared with ``hmac.compare_digest`` over bytes, against every configured
token each time, so the answer time tells nothing about how much of a guess was right.
Missing or unknown token: 401 with a ``WWW-Authenticate`` challenge; the API token on an
admin route: 403 (the caller is known, the route is not theirs).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from stockguard.service.errors import AuthError

admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="Authorization: Bearer <STOCKGUARD_ADMIN_TOKEN>",
)
api_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="Authorization: Bearer <STOCKGUARD_API_TOKEN> (or the admin token)",
)


class Tokens:
    """The configured tokens as bytes, ready for constant-time comparison."""

    def __init__(self, admin: SecretStr | None, api: SecretStr | None) -> None:
        self.admin = _encoded(admin)
        self.api = _encoded(api)

    def roles_of(self, given: str) -> tuple[bool, bool]:
        """(is the admin token, is the API token), both compared in full every time."""
        # Starlette decodes header bytes as latin-1: this gives back the bytes sent.
        raw = given.encode("latin-1", errors="replace")
        is_admin = self.admin is not None and hmac.compare_digest(raw, self.admin)
        is_api = self.api is not None and hmac.compare_digest(raw, self.api)
        return is_admin, is_api


def _encoded(token: SecretStr | None) -> bytes | None:
    return None if token is None else token.get_secret_value().encode("utf-8")


def _tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(admin_bearer)],
) -> None:
    if credentials is None:
        raise AuthError(
            "unauthorized", "this route needs the admin bearer token", token_given=False
        )
    is_admin, is_api = _tokens(request).roles_of(credentials.credentials)
    if is_admin:
        return
    if is_api:
        raise AuthError("forbidden", "the API token cannot use admin routes", token_given=True)
    raise AuthError("unauthorized", "the bearer token is not valid", token_given=True)


def require_api(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(api_bearer)],
) -> None:
    """Only installed on the API routes when an API token is configured."""
    if credentials is None:
        raise AuthError("unauthorized", "this route needs the API bearer token", token_given=False)
    is_admin, is_api = _tokens(request).roles_of(credentials.credentials)
    if not (is_admin or is_api):
        raise AuthError("unauthorized", "the bearer token is not valid", token_given=True)
