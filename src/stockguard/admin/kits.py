"""The kits page: every kit with how many can be sold now, and a form to define one.

A kit's definition never changes once written (docs/design.md#kits), so the page offers
no edit: a mistake is a new kit SKU. Components are entered one per line as ``SKU
QUANTITY`` (``SOCK-BLACK 2``), the way a person writes a bill of materials.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from stockguard import domain
from stockguard.admin import forms, views, web
from stockguard.admin.session import Flash, Session
from stockguard.domain.kits import KIT_COMPONENTS_MAX, kit_available

KITS_PAGE_MAX = 100
COMPONENTS_TEXT_LEN_MAX = KIT_COMPONENTS_MAX * (domain.SKU_LEN_MAX + 12)


def parse_components(text: str) -> list[tuple[str, int]]:
    """``SKU QUANTITY`` per line (quantity 1 when left out); blank lines are skipped."""
    if len(text) > COMPONENTS_TEXT_LEN_MAX:
        raise domain.InvalidInput("components", "is too long")
    parsed: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) > 2:
            raise domain.InvalidInput("components", f"line {number}: write SKU QUANTITY")
        quantity = 1
        if len(words) == 2:
            if not words[1].isascii() or not words[1].isdigit():
                raise domain.InvalidInput("components", f"line {number}: quantity is not a number")
            quantity = int(words[1])
        parsed.append((words[0], quantity))
        if len(parsed) > KIT_COMPONENTS_MAX:
            break  # validate_kit names the limit
    return parsed


async def kits_page(request: Request) -> Response:
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
    status_code: int = 200,
) -> Response:
    engine = web.engine_of(request)
    found = await engine.list_kits(limit=KITS_PAGE_MAX)
    skus = sorted({c.sku for kit in found for c in kit.components})
    levels = {level.sku: level for level in await engine.stock(skus)} if skus else {}
    rows = [
        {
            "sku": kit.sku,
            "components": kit.components,
            "available": kit_available(kit, levels),
            "levels": levels,
        }
        for kit in found
    ]
    return web.page(
        request,
        "kits.html",
        {
            "kits": rows,
            "kit_form": form or {"sku": "", "components": ""},
            "kit_error": error,
            "components_max": KIT_COMPONENTS_MAX,
        },
        session=session,
        status_code=status_code,
    )


async def define_kit(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    given = {"sku": forms.text(form, "sku"), "components": forms.text(form, "components")}
    try:
        kit, created = await web.engine_of(request).define_kit(
            given["sku"].strip(), parse_components(given["components"])
        )
    except domain.StockguardError as error:
        return await _page(
            request,
            session,
            form=given,
            error=views.explain(error),
            status_code=views.status_of(error),
        )
    parts = ", ".join(f"{c.quantity} × {c.sku}" for c in kit.components)
    message = f"Kit {kit.sku} is {parts}." if created else f"Kit {kit.sku} already was {parts}."
    return web.redirect(request, "/admin/kits", Flash("ok", message))
