"""The admin page at ``/admin`` (docs/design.md#admin-page), served by ``stockguard serve``.

Server-rendered pages (Jinja2) plus two small scripts: the overview (products with their
variants, SKUs without a product, recent reservations), a SKU page with its stock policy
and movement ledger (``admin.sku``), the drop view of one SKU's sale (``admin.drop``),
sign-in and sign-out. Plain forms post here and redirect back with a message
(post/redirect/get); the stock dialogs and live figures use the JSON endpoints of
``admin.api``. Everything reads the engine from ``request.app.state`` like the service.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from stockguard import domain
from stockguard.admin import api, drop, forms, kits, locations, sku, views, web, webhooks
from stockguard.admin.session import Flash, Session, same_origin
from stockguard.domain import ORDER_ID_LEN_MAX, Product, Status, StockLevel

PRODUCTS_PAGE_MAX = 50
STANDALONE_PAGE_MAX = 100
VARIANT_ROWS_MAX = 600
"""Stock rows one overview renders (and polls); a narrower search shows the rest."""
RESERVATIONS_PAGE = 25
SEARCH_LEN_MAX = 64
TOKEN_LEN_MAX = 1_024
STATIC_FILES = {
    "admin.css": "text/css",
    "admin.js": "text/javascript",
    "drop.js": "text/javascript",
}
"""The only files /admin/static serves: a fixed list, so no path can reach elsewhere."""


def admin_router() -> APIRouter:
    """Every /admin route; the service includes it with ``app.include_router``."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    router.add_api_route("", overview, methods=["GET"])
    router.add_api_route("/", overview, methods=["GET"])
    router.add_api_route("/sign-in", sign_in_form, methods=["GET"])
    router.add_api_route("/sign-in", sign_in, methods=["POST"])
    router.add_api_route("/sign-out", sign_out, methods=["POST"])
    router.add_api_route("/sku", sku.sku_page, methods=["GET"])
    router.add_api_route("/sku/policy", sku.save_policy, methods=["POST"])
    router.add_api_route("/drop", drop.drop_page, methods=["GET"])
    router.add_api_route("/api/drop", drop.drop_figures, methods=["GET"])
    router.add_api_route("/products", create_product, methods=["POST"])
    router.add_api_route("/kits", kits.kits_page, methods=["GET"])
    router.add_api_route("/kits", kits.define_kit, methods=["POST"])
    router.add_api_route("/locations", locations.locations_page, methods=["GET"])
    router.add_api_route("/locations", locations.create_location, methods=["POST"])
    router.add_api_route("/locations/update", locations.update_location, methods=["POST"])
    router.add_api_route("/reservations/release", release, methods=["POST"])
    router.add_api_route("/webhooks", webhooks.webhooks_page, methods=["GET"])
    router.add_api_route("/webhooks/redeliver", webhooks.redeliver, methods=["POST"])
    router.add_api_route("/static/{name}", static_file, methods=["GET"])
    api.api_routes(router)
    return router


# ---------------------------------------------------------------------------- sign-in


async def sign_in_form(request: Request) -> Response:
    if web.current_session(request) is not None:
        return web.redirect(request, "/admin")
    return _sign_in_page(request)


def _sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    configured = web.signer_of(request) is not None
    return web.page(
        request,
        "sign_in.html",
        {"error": error, "configured": configured},
        session=None,
        status_code=status_code,
    )


async def sign_in(request: Request) -> Response:
    signer = web.signer_of(request)
    if signer is None:
        return _sign_in_page(request, "This service has no admin token configured.", 403)
    if not same_origin(request):
        return _sign_in_page(request, "Sign in from this page.", 403)
    try:
        form = await request.form(max_files=0, max_fields=forms.FORM_FIELDS_MAX)
        token = form.get("token")
    except Exception:  # a body that is not a form: same answer as a wrong token
        token = None
    if not isinstance(token, str) or len(token) > TOKEN_LEN_MAX or not signer.token_matches(token):
        return _sign_in_page(request, "That is not the admin token.", 401)
    return web.start_session(request, signer)


async def sign_out(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    return web.end_session(request)


# ---------------------------------------------------------------------------- pages


async def overview(request: Request) -> Response:
    session = web.current_session(request)
    if session is None:
        return web.to_sign_in(request)
    return await _overview_page(request, session)


async def _overview_page(
    request: Request,
    session: Session,
    *,
    product_form: forms.ProductForm | None = None,
    product_error: str | None = None,
    status_code: int = 200,
) -> Response:
    params = request.query_params
    search = params.get("q", "").strip()[:SEARCH_LEN_MAX]
    notices: list[str] = []
    if search:
        try:
            domain.validate_filter_text(search, "search", SEARCH_LEN_MAX)
        except domain.InvalidInput as error:  # NUL and the like: no name holds them
            notices.append(views.explain(error))
            search = ""
    engine = web.engine_of(request)
    try:
        products = await engine.list_products(search=search or None, limit=PRODUCTS_PAGE_MAX)
        standalone = await engine.list_standalone_stock(
            search=search or None, limit=STANDALONE_PAGE_MAX
        )
        reservations = await _reservations(request, notices)
    except domain.StockguardError as error:
        return web.domain_error_page(request, error)
    shown, hidden = _within_row_budget(products)
    if hidden:
        notices.append(f"{hidden} more product(s) not shown: search to narrow the list.")
    levels = [v.stock for p in shown for v in p.variants] + standalone
    return web.page(
        request,
        "overview.html",
        {
            "search": search,
            "products": shown,
            "standalone": standalone,
            "summary": _summary(shown, levels),
            "reservations": reservations,
            "notices": notices,
            "product_form": product_form or forms.ProductForm(),
            "product_error": product_error,
            "here": _here(request),
            "options_text": views.options_text,
            "stock_state": views.stock_state,
        },
        session=session,
        status_code=status_code,
    )


def _within_row_budget(products: list[Product]) -> tuple[list[Product], int]:
    shown: list[Product] = []
    rows = 0
    for product in products:
        rows += len(product.variants)
        if rows > VARIANT_ROWS_MAX and shown:
            return shown, len(products) - len(shown)
        shown.append(product)
    return shown, 0


def _summary(products: list[Product], levels: list[StockLevel]) -> dict[str, int]:
    states = [views.stock_state(level.available) for level in levels]
    return {
        "products": len(products),
        "skus": len(levels),
        "sold_out": states.count("sold-out"),
        "low": states.count("low"),
    }


async def _reservations(request: Request, notices: list[str]) -> dict[str, Any]:
    """The reservations section; a bad filter is reported and dropped, never a 500."""
    params = request.query_params
    filters = {
        "status": params.get("status", "").strip(),
        "sku": params.get("sku", "").strip(),
        "order_id": params.get("order_id", "").strip(),
    }
    cursor = params.get("cursor") or None
    try:
        status = forms.status(filters["status"])
    except domain.InvalidInput as error:
        notices.append(views.explain(error))
        status, filters["status"] = None, ""
    sku = filters["sku"] or None
    if sku is not None:
        try:
            domain.validate_sku(sku)
        except domain.InvalidInput as error:
            notices.append(views.explain(error))
            sku, filters["sku"] = None, ""
    order_id = filters["order_id"][:ORDER_ID_LEN_MAX] or None
    if order_id is not None:
        try:
            domain.validate_filter_text(order_id, "order_id", ORDER_ID_LEN_MAX)
        except domain.InvalidInput as error:
            notices.append(views.explain(error))
            order_id, filters["order_id"] = None, ""
    engine = web.engine_of(request)
    try:
        items, next_cursor = await engine.list_reservations(
            status=status, sku=sku, order_id=order_id, limit=RESERVATIONS_PAGE, cursor=cursor
        )
    except domain.InvalidInput as error:  # a cursor this page did not make
        notices.append(views.explain(error))
        items, next_cursor = await engine.list_reservations(
            status=status, sku=sku, order_id=order_id, limit=RESERVATIONS_PAGE
        )
    now_ms = int(time.time() * 1000)
    return {
        "filters": filters,
        "statuses": [s.value for s in Status],
        "items": [views.reservation_view(r, now_ms) for r in items],
        "next_cursor": next_cursor,
        "filtered": any(filters.values()),
    }


def _here(request: Request) -> str:
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


# ---------------------------------------------------------------------------- forms


async def create_product(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    product_form = forms.ProductForm()
    try:
        product_form = forms.ProductForm.read(form)
        product = await web.engine_of(request).create_product(
            product_form.name,
            product_form.options() or None,
            initial_on_hand=product_form.initial(),
            sku_prefix=product_form.sku_prefix or None,
        )
    except domain.StockguardError as error:
        return await _overview_page(
            request,
            session,
            product_form=product_form,
            product_error=views.explain(error),
            status_code=views.status_of(error),
        )
    count = len(product.variants)
    message = f"Created {product.name} with {count} variant{'s' if count != 1 else ''}."
    return web.redirect(request, views.admin_url("/admin", q=product.name), Flash("ok", message))


async def release(request: Request) -> Response:
    checked = await web.checked_form(request, wants_json=False)
    if isinstance(checked, Response):
        return checked
    _session, form = checked
    back = web.safe_return_path(forms.text(form, "return_to") or "/admin")
    try:
        released = await web.engine_of(request).release(forms.text(form, "reservation_id"))
    except domain.StockguardError as error:
        return web.redirect(request, back, Flash("error", views.explain(error)))
    units = sum(line.quantity for line in released.lines)
    if released.status is Status.RELEASED:
        text = f"Released order {released.order_id}: {units} unit(s) are available again."
    else:
        text = f"Order {released.order_id} had already {released.status}; nothing to release."
    return web.redirect(request, back, Flash("ok", text))


async def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return web.secured(Response("not found", status_code=404, media_type="text/plain"))
    response = FileResponse(web.HERE / "static" / name, media_type=media_type)
    response.headers["Cache-Control"] = "no-cache"
    return web.secured(response)
