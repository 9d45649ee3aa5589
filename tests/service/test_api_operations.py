"""Health, readiness, metrics, the request log line, 429s, and the error table itself."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from stockguard import domain
from stockguard.admission import AdmissionLimits
from stockguard.engine import Engine
from stockguard.metrics import StrategyEventMirror
from stockguard.service.errors import PROBLEMS
from stockguard.service.logs import JsonFormatter

from .support import Api, AppFactory, assert_problem


async def sample(api: Api, name: str, **labels: str) -> float:
    """One sample of the service's own /metrics answer (0 when absent)."""
    text = (await api.client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def test_healthz_and_readyz_answer_200(api: Api) -> None:
    health = await api.client.get("/healthz")
    ready = await api.client.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_metrics_count_requests_by_route_template_and_status(api: Api) -> None:
    await api.set_stock("A", 1)
    route = {"route": "/v1/reservations/{reservation_id}", "method": "GET", "status": "404"}
    before = await sample(api, "stockguard_http_requests_total", **route)
    latency_before = await sample(api, "stockguard_http_request_duration_seconds_count", **route)
    held_before = await sample(api, "stockguard_reservations_total", outcome="held")

    await api.client.get("/v1/reservations/first-unknown")
    await api.client.get("/v1/reservations/second-unknown")
    await api.reserve("order-1", {"A": 1})

    assert await sample(api, "stockguard_http_requests_total", **route) == before + 2
    latency_after = await sample(api, "stockguard_http_request_duration_seconds_count", **route)
    assert latency_after == latency_before + 2
    assert await sample(api, "stockguard_reservations_total", outcome="held") == held_before + 1
    text = (await api.client.get("/metrics")).text
    assert "stockguard_http_requests_in_flight" in text
    assert "stockguard_expiry_sweeps_total" in text
    assert "first-unknown" not in text  # raw paths never become labels


async def test_each_request_logs_one_line_with_the_order_id_and_request_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await api.set_stock("A", 1)
    caplog.set_level(logging.INFO, logger="stockguard.http")

    await api.reserve("order-42", {"A": 1})
    answer = await api.client.get("/healthz", headers={"X-Request-ID": "probe-7"})
    assert answer.headers["x-request-id"] == "probe-7"

    records = [r for r in caplog.records if r.name == "stockguard.http"]
    lines = [json.loads(JsonFormatter().format(record)) for record in records]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/v1/reservations", 201),
        ("GET", "/healthz", 200),
    ]
    assert lines[0]["order_id"] == "order-42"
    assert "order_id" not in lines[1]
    assert all(line["duration_ms"] >= 0 for line in lines)
    assert lines[1]["msg"] == "GET /healthz 200"
    assert lines[1]["request_id"] == "probe-7"
    assert re.fullmatch(r"[0-9a-f]{16}", lines[0]["request_id"])  # made: the log is on


async def test_requests_over_the_admission_cap_are_429_with_retry_after(
    make_api: AppFactory, db_url: str
) -> None:
    """An engine admitting one reservation at a time: 20 sent at once through the ASGI
    transport all arrive while the first awaits the database, so the rest are refused."""
    capped = AdmissionLimits(in_flight_max=1, in_flight_per_sku_max=1)
    engine = await Engine.open(db_url, migrate=False, pool_size=2, admission=capped)
    async with engine, make_api(engine=engine) as api:
        await api.set_stock("A", 100)
        answers = await asyncio.gather(*(api.reserve(f"order-{n}", {"A": 1}) for n in range(20)))
        statuses = Counter(answer.status_code for answer in answers)
        reserved = (await api.stock("A"))["reserved"]

    assert set(statuses) == {201, 429}, statuses
    assert reserved == statuses[201]
    for answer in answers:
        if answer.status_code == 429:
            assert_problem(answer, 429, "overloaded")
            assert int(answer.headers["retry-after"]) >= 1


async def test_an_unknown_path_and_an_unknown_method_are_problem_details(api: Api) -> None:
    unknown = await api.client.get("/v2/nothing")
    wrong_method = await api.client.delete("/v1/stock/A")

    assert_problem(unknown, 404, "not-found")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert "GET" in wrong_method.headers["allow"]


def test_every_domain_error_kind_has_a_row_in_the_problem_table() -> None:
    def subclasses(cls: type[domain.StockguardError]) -> list[type[domain.StockguardError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    kinds = {cls.kind for cls in subclasses(domain.StockguardError)} - {"error"}

    assert kinds <= set(PROBLEMS), kinds - set(PROBLEMS)


async def test_the_openapi_document_declares_every_error_as_problem_details(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()

    for path, item in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"422", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert "413" in statuses, (method, path)
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
                    assert re.search(r"/problems/[a-z-]+", response["description"])
    reserve = document["paths"]["/v1/reservations"]["post"]["responses"]
    assert {"200", "201", "404", "409", "422", "429", "503"} <= set(reserve)
    confirm = document["paths"]["/v1/reservations/{reservation_id}/confirm"]["post"]
    assert {"404", "409", "410"} <= set(confirm["responses"])


def test_strategy_events_reach_prometheus_once_each() -> None:
    """The mirror pushes only what a strategy counted since the last sync."""
    counters: Counter[str] = Counter()
    mirror = StrategyEventMirror("test-strategy", counters)

    def exported() -> float:
        value = REGISTRY.get_sample_value(
            "stockguard_strategy_events_total",
            {"strategy": "test-strategy", "event": "optimistic_retries"},
        )
        return value or 0.0

    before = exported()
    counters["optimistic_retries"] += 3
    mirror.sync()
    mirror.sync()
    counters["optimistic_retries"] += 2
    mirror.sync()

    assert exported() == before + 5


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/reservations", "GET, POST"),
        ("DELETE", "/v1/reservations", "GET, POST"),
        ("OPTIONS", "/v1/stock/A", "GET, PUT"),
        ("PATCH", "/v1/stock/A", "GET, PUT"),
        ("PUT", "/v1/reservations/some-id", "GET"),
        ("GET", "/v1/reservations/some-id/confirm", "POST"),
    ],
)
async def test_405_names_every_method_of_the_path_in_allow(
    api: Api, method: str, path: str, allowed: str
) -> None:
    """RFC 9110: ``Allow`` lists every method the resource supports, not just the first
    route's (schemathesis found ``OPTIONS /v1/reservations`` saying only ``POST``)."""
    answer = await api.client.request(method, path, headers=api.admin)
    assert_problem(answer, 405, "method-not-allowed")
    assert answer.headers["allow"] == allowed
