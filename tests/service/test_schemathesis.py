"""Schemathesis against the OpenAPI document a real ``stockguard serve`` publishes.

Every operation of the document is called with generated requests, valid ones and
invalid ones (``EXAMPLES_MAX`` of each), carrying the admin token. Schemathesis checks
each answer: no 5xx, a declared status, the declared media type and schema, invalid
requests refused, auth enforced where declared. (Its pytest plugin cannot resolve a
fixture-made schema under pytest 9, so each operation runs its own Hypothesis test
here, on the operation taken from the served document.)

One stock check is replaced: "valid data is accepted" cannot hold for rules JSON Schema
cannot state (a SKU twice in one order, variants that do not match the option axes, a
reservation id that does not exist…). In its place, ``only_domain_rules_refuse``
demands that a schema-valid request is never refused by the HTTP layer's own
validation: the document must describe everything that layer checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from stockguard.config import Settings
from stockguard.service import create_app

from .support import ADMIN_TOKEN, Served, bearer, run_serve

EXAMPLES_MAX = 25
HTTP_LAYER_LOCATIONS = ("body", "query", "path", "header", "cookie")

_DOCUMENT = create_app(Settings(admin_token=ADMIN_TOKEN)).openapi()
"""Known before any server runs: the same code builds the document the server serves."""
OPERATIONS = sorted(
    (method.upper(), path, mode)
    for path, item in _DOCUMENT["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # Without any input there is no invalid request to make.
    if mode is GenerationMode.POSITIVE
    or operation.get("parameters")
    or operation.get("requestBody")
)


def only_domain_rules_refuse(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if response.status_code != 422:
        return
    fields = [error["field"] for error in response.json().get("errors", [])]
    by_http_layer = [field for field in fields if field.split(".")[0] in HTTP_LAYER_LOCATIONS]
    assert not by_http_layer, f"a schema-valid request was refused by the HTTP layer: {fields}"


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    run_dir = tmp_path_factory.mktemp("schemathesis")
    database = f"sqlite:///{run_dir}/schemathesis.db"
    with run_serve(
        run_dir, "--db", database, env={"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    ) as served:
        # Stock under the SKUs Hypothesis tries first, so that valid reservations reach
        # their 201 (and its schema) rather than only unknown-sku answers.
        for sku in ("0", "A"):
            answer = httpx.put(
                f"{served.url}/v1/stock/{sku}",
                json={"on_hand": 10**9},
                headers=bearer(ADMIN_TOKEN),
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        yield served


@pytest.fixture(scope="module")
def api_schema(served_api: Served) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served_api.url}/openapi.json")


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_every_answer_conforms_to_the_served_openapi_document(
    api_schema: schemathesis.BaseSchema,
    served_api: Served,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @settings(
        max_examples=EXAMPLES_MAX,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call_and_check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=served_api.url,
            headers=bearer(ADMIN_TOKEN),
            timeout=30,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[only_domain_rules_refuse],
        )

    call_and_check()
