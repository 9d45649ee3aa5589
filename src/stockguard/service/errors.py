"""Every error the service answers, as RFC 9457 problem details, from ONE table.

``PROBLEMS`` maps a problem kind (the domain error's stable ``kind``, or one of the few
kinds only HTTP has) to its status and title; the problem ``type`` is
``PROBLEM_TYPE_BASE + kind``. The handlers below turn domain errors, validation errors,
framework errors and a backend that cannot answer into that shape, so a client can
switch on ``type`` alone. A down or slow backend is a 503 with ``Retry-After``, never a
500: only a bug in stockguard answers 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from stockguard import domain, problems
from stockguard.problems import PROBLEMS
from stockguard.service.models import PolicyOut, Problem, StockOut

PROBLEM_TYPE_BASE = "https://stockguard.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_MEDIA_TYPE_BYTES = PROBLEM_MEDIA_TYPE.encode()
BACKEND_FAILURE_DETAIL = "the database cannot answer right now; retry later"
RETRY_AFTER_S_DEFAULT = 1
LIST_ERRORS_MAX = 20
"""Validation errors listed in one answer; a 1 MB body of bad items stays a short answer."""

logger = logging.getLogger("stockguard.service")


_KIND_OF_HTTP_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
}

BACKEND_FAILURES: tuple[type[Exception], ...] = (
    OSError,  # includes ConnectionError and TimeoutError
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)
"""Driver errors the store did not type (it maps the ones it knows to StoreUnavailable):
at the edge they still mean "the backend cannot answer now", hence 503, not 500."""


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class AuthError(Exception):
    """Raised by the auth dependencies; ``kind`` is "unauthorized" or "forbidden"."""

    def __init__(self, kind: str, detail: str, *, token_given: bool) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.token_given = token_given


def problem_content(kind: str, detail: str, **extensions: Any) -> dict[str, Any]:
    """The problem document for one kind of the table; extension members (already plain
    JSON values) follow the four standard ones, in ``Problem``'s order, when not None."""
    known = PROBLEMS[kind]
    content: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": known.title,
        "status": known.status,
        "detail": detail,
    }
    for name in PROBLEM_EXTENSIONS:
        value = extensions.pop(name, None)
        if value is not None:
            content[name] = value
    if extensions:
        raise TypeError(f"unknown problem members: {sorted(extensions)}")
    return content


PROBLEM_EXTENSIONS = ("shortfalls", "current", "policy", "limit", "skus", "errors")
"""``models.Problem``'s optional members, in its order."""


def render(content: Mapping[str, Any]) -> bytes:
    """JSON as Starlette's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def problem(
    kind: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """The answer for one problem kind of the table."""
    content = problem_content(kind, detail, **extensions)
    return ProblemResponse(content, status_code=content["status"], headers=dict(headers or {}))


def problem_bytes(kind: str, detail: str) -> tuple[int, bytes]:
    """Status and encoded body, for ASGI code that answers without FastAPI."""
    content = problem_content(kind, detail)
    return content["status"], render(content)


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds)))}


def domain_problem_content(
    error: domain.StockguardError,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The table applied to one domain error, with the members its kind carries: the
    problem document and the extra headers (``Retry-After``)."""
    if error.kind not in PROBLEMS:
        logger.error("domain error kind %r has no problem mapping", error.kind)
        return problem_content("internal-error", "an error of an unknown kind occurred"), {}
    detail = str(error)
    if isinstance(error, domain.OutOfStock):
        shortfalls = [
            {"sku": s.sku, "requested": s.requested, "available": s.available}
            for s in error.shortfalls
        ]
        return problem_content(error.kind, detail, shortfalls=shortfalls), {}
    if isinstance(error, domain.StockChanged | domain.BelowReserved):
        current = StockOut.of(error.current).model_dump(mode="json")
        return problem_content(error.kind, detail, current=current), {}
    if isinstance(error, domain.PolicyChanged):
        policy = PolicyOut.of(error.sku, error.current).model_dump(mode="json")
        return problem_content(error.kind, detail, policy=policy), {}
    if isinstance(error, domain.CustomerLimit):
        limit = {
            "sku": error.sku,
            "customer_max": error.limit,
            "units": error.units,
            "requested": error.requested,
        }
        return problem_content(error.kind, detail, limit=limit), {}
    if isinstance(error, domain.UnknownSku | domain.DuplicateSku):
        return problem_content(error.kind, detail, skus=list(error.skus)), {}
    if isinstance(error, domain.InvalidInput):
        invalid = [{"field": error.field, "detail": error.reason}]
        return problem_content(error.kind, detail, errors=invalid), {}
    retry_after_s = problems.retry_after_s(error)
    if retry_after_s is not None:
        return problem_content(error.kind, detail), _retry_after(retry_after_s)
    return problem_content(error.kind, detail), {}


def domain_problem(error: domain.StockguardError) -> ProblemResponse:
    content, headers = domain_problem_content(error)
    return ProblemResponse(content, status_code=content["status"], headers=headers)


def domain_problem_parts(
    error: domain.StockguardError,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``domain_problem`` as raw ASGI parts: status, headers, body."""
    content, headers = domain_problem_content(error)
    raw = [(b"content-type", PROBLEM_MEDIA_TYPE_BYTES)]
    raw.extend((name.lower().encode(), value.encode()) for name, value in headers.items())
    return content["status"], raw, render(content)


def backend_failure(failure: Exception) -> domain.StoreUnavailable:
    """A driver error nobody typed, as the domain's 503 (``Retry-After``, a detail in
    words); its own text goes to the log only. Both faces of the API answer through it."""
    logger.warning("backend failure answered 503: %s: %s", type(failure).__name__, failure)
    return domain.StoreUnavailable(BACKEND_FAILURE_DETAIL, RETRY_AFTER_S_DEFAULT)


def _field_path(location: Sequence[Any]) -> str:
    return ".".join(str(part) for part in location)


async def _on_domain_error(_request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, domain.StockguardError)
    return domain_problem(error)


async def _on_validation_error(_request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"field": _field_path(item.get("loc", ())), "detail": str(item.get("msg", "invalid"))}
        for item in error.errors()
    ]
    first = errors[0] if errors else {"field": "request", "detail": "invalid"}
    return problem(
        "invalid-input", f"{first['field']}: {first['detail']}", errors=errors[:LIST_ERRORS_MAX]
    )


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def allowed_methods(request: Request) -> str | None:
    """Every method the API serves at this path (RFC 9110 §15.5.6: ``Allow`` lists them
    all), read from the OpenAPI document. Starlette names only the first route whose path
    matched, so ``GET /v1/reservations`` (list) hid behind ``POST`` (reserve)."""
    templates: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        request.app.state, "allow_by_path", None
    )
    if templates is None:
        templates = [
            (
                re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))),
                {method.upper() for method in item if method in HTTP_METHODS},
            )
            for path, item in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allow_by_path = templates
    methods: set[str] = set()
    for pattern, served in templates:
        if pattern.fullmatch(request.url.path):
            methods |= served
    return ", ".join(sorted(methods)) if methods else None


async def _on_http_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        headers = dict(error.headers or {})
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return problem("method-not-allowed", str(error.detail), headers=headers)
    if error.status_code == 400:
        # FastAPI's answer to a body it could not decode at all (a number past Python's
        # digit limit, bytes that are not UTF-8): to the API that is malformed JSON.
        return problem("invalid-input", "the request body is not valid JSON")
    kind = _KIND_OF_HTTP_STATUS.get(error.status_code)
    if kind is None:
        return ProblemResponse(
            {
                "type": "about:blank",
                "title": str(error.detail),
                "status": error.status_code,
                "detail": str(error.detail),
            },
            status_code=error.status_code,
            headers=dict(error.headers or {}),
        )
    return problem(kind, str(error.detail), headers=error.headers)


async def _on_auth_error(_request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, AuthError)
    headers = {}
    if error.kind == "unauthorized":
        challenge = 'Bearer error="invalid_token"' if error.token_given else "Bearer"
        headers["WWW-Authenticate"] = challenge
    return problem(error.kind, error.detail, headers=headers)


async def _on_backend_failure(_request: Request, error: Exception) -> ProblemResponse:
    return domain_problem(backend_failure(error))


async def _on_bug(_request: Request, error: Exception) -> ProblemResponse:
    logger.error("unexpected error", exc_info=error)
    return problem("internal-error", "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    """Registers every handler of this module on ``app``."""
    app.add_exception_handler(domain.StockguardError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(AuthError, _on_auth_error)
    for failure in BACKEND_FAILURES:
        app.add_exception_handler(failure, _on_backend_failure)
    app.add_exception_handler(Exception, _on_bug)


def declared(*kinds: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem kinds a route can answer, grouped by status.

    Each status's description names its problem types, so the document tells a client
    which ``type`` values to expect where. (The app moves these bodies from
    ``application/json`` to ``application/problem+json`` when it renders the document.)
    """
    by_status: dict[int, list[str]] = {}
    for kind in kinds:
        by_status.setdefault(PROBLEMS[kind].status, []).append(kind)
    return {
        status: {
            "model": Problem,
            "description": "; ".join(
                f"{PROBLEMS[kind].title} ({PROBLEM_TYPE_BASE}{kind})" for kind in found
            ),
        }
        for status, found in sorted(by_status.items())
    }


STORE_KINDS = (domain.Overloaded.kind, domain.StoreUnavailable.kind)
"""What any route that reaches the store can answer besides its own errors."""
AUTH_KINDS_ADMIN = ("unauthorized", "forbidden")
AUTH_KINDS_API = ("unauthorized",)
