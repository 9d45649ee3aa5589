"""stockguard under Locust: the ``drop`` and ``shop`` flows of ``stockguard loadtest``.

- ``DropUser``: seed 003's buyer (docs/design.md#seed-003): a new order of 1 unit of one
  SKU, as fast as the service answers; 201 and 409 are both correct answers.
- ``ShopUser``: reads a SKU's stock, holds a multi-line order over Zipf-skewed SKUs, then
  pays (confirm), cancels (release) or walks away (the hold expires after its TTL).

Set-up (the stock) goes through the admin API when the test starts, so the admin token is
needed::

    STOCKGUARD_ADMIN_TOKEN=… locust -f examples/locust/locustfile.py \\
        --host http://127.0.0.1:8000 --headless -u 500 -r 100 -t 60s

Environment: ``DROP_SKU`` / ``DROP_UNITS`` (default a fresh SKU with 100 units),
``SHOP_SKUS`` / ``SHOP_UNITS`` (200 SKUs of 50 units), ``SHOP_TTL_S`` (10),
``STOCKGUARD_API_TOKEN`` when the service requires one. Locust is in the ``dev`` extra.
"""

from __future__ import annotations

import json
import os
import random
import urllib.request
import uuid
from typing import Any

from locust import HttpUser, between, constant, events, task

ADMIN_TOKEN = os.environ.get("STOCKGUARD_ADMIN_TOKEN", "")
API_TOKEN = os.environ.get("STOCKGUARD_API_TOKEN", "")
RUN = uuid.uuid4().hex[:8]
DROP_SKU = os.environ.get("DROP_SKU", f"LOCUST-DROP-{RUN}")
DROP_UNITS = int(os.environ.get("DROP_UNITS", "100"))
SHOP_SKUS = [f"LOCUST-SHOP-{RUN}-{n:04d}" for n in range(int(os.environ.get("SHOP_SKUS", "200")))]
SHOP_UNITS = int(os.environ.get("SHOP_UNITS", "50"))
SHOP_TTL_S = int(os.environ.get("SHOP_TTL_S", "10"))
ZIPF = [1 / rank**1.1 for rank in range(1, len(SHOP_SKUS) + 1)]
HEADERS = {"Authorization": f"Bearer {API_TOKEN}"} if API_TOKEN else {}


def _put_stock(host: str, sku: str, on_hand: int) -> None:
    request = urllib.request.Request(  # noqa: S310 - the --host the user gave
        f"{host.rstrip('/')}/v1/stock/{sku}",
        data=json.dumps({"on_hand": on_hand}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        if answer.status != 200:
            raise RuntimeError(f"PUT /v1/stock/{sku} answered {answer.status}")


@events.test_start.add_listener
def set_up_stock(environment: Any, **_: Any) -> None:
    """The drop SKU and the shop's SKUs, through the admin API."""
    if not environment.host:
        raise RuntimeError("give --host, e.g. --host http://127.0.0.1:8000")
    _put_stock(environment.host, DROP_SKU, DROP_UNITS)
    for sku in SHOP_SKUS:
        _put_stock(environment.host, sku, SHOP_UNITS)


def _order_id() -> str:
    return f"{RUN}-{uuid.uuid4().hex}"


class DropUser(HttpUser):
    """docs/design.md#seed-003: every iteration a new order of 1 unit of the drop SKU."""

    wait_time = constant(0)

    @task
    def reserve(self) -> None:
        body = {"order_id": _order_id(), "items": [{"sku": DROP_SKU, "quantity": 1}]}
        with self.client.post(
            "/v1/reservations",
            json=body,
            headers=HEADERS,
            name="drop: reserve",
            catch_response=True,
        ) as answer:
            if answer.status_code in (201, 409):
                answer.success()
            else:
                answer.failure(f"status {answer.status_code}: only 201 or 409 are acceptable")


class ShopUser(HttpUser):
    """Look, hold a few lines, then pay (60 %), cancel (20 %) or walk away (20 %)."""

    wait_time = between(0.0, 0.2)

    def _sku(self) -> str:
        return random.choices(SHOP_SKUS, weights=ZIPF, k=1)[0]

    @task
    def order(self) -> None:
        self.client.get(f"/v1/stock/{self._sku()}", headers=HEADERS, name="shop: stock")
        skus = {self._sku() for _ in range(random.randint(1, 3))}
        body = {
            "order_id": _order_id(),
            "items": [{"sku": sku, "quantity": random.randint(1, 2)} for sku in sorted(skus)],
            "ttl_seconds": SHOP_TTL_S,
        }
        with self.client.post(
            "/v1/reservations",
            json=body,
            headers=HEADERS,
            name="shop: reserve",
            catch_response=True,
        ) as answer:
            if answer.status_code not in (201, 409):
                answer.failure(f"status {answer.status_code}: only 201 or 409 are acceptable")
                return
            answer.success()
            if answer.status_code != 201:
                return
            held = answer.json()["id"]
        roll = random.random()
        if roll < 0.6:
            self.client.post(
                f"/v1/reservations/{held}/confirm", headers=HEADERS, name="shop: confirm"
            )
        elif roll < 0.8:
            self.client.post(
                f"/v1/reservations/{held}/release", headers=HEADERS, name="shop: release"
            )
        # else: walk away; the hold expires after SHOP_TTL_S
