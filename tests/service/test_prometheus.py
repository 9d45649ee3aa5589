"""The shipped Prometheus config, rules and Grafana dashboard, checked by the real tools.

- ``promtool`` checks the config and the rules and runs the rules' unit tests (one case
  per alert, in ``deploy/prometheus/stockguard.rules.test.yml``).
- Every metric the rules and the dashboard name is one the service exports.
- A real Prometheus scrapes a real ``serve --workers 2`` under a short flash sale: the
  held count read back through Prometheus's HTTP API is exactly the 201s the buyers got,
  and every dashboard query is accepted by Prometheus.

Polling is bounded by count; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from .support import ADMIN_TOKEN, AppFactory, Served, bearer, free_port

Serve = Callable[..., AbstractContextManager[Served]]

DEPLOY = Path(__file__).parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "stockguard.json"
POLLS_MAX = 120
POLL_S = 0.5


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\bstockguard_[a-z_]+\b", text))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "stockguard.rules.yml"],
        ["test", "rules", "stockguard.rules.test.yml"],
    ],
)
def test_promtool_accepts_the_config_and_the_rules_pass_their_tests(command: list[str]) -> None:
    done = subprocess.run(
        [_tool("promtool"), *command], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_metric_the_rules_and_dashboard_name_is_exported(api_metrics: str) -> None:
    exported = _metric_names(api_metrics)
    named = _metric_names((PROMETHEUS / "stockguard.rules.yml").read_text())
    named |= _metric_names(" ".join(_dashboard_queries()))
    named -= {name for name in named if name.startswith("stockguard_http_5xx")}
    assert named, "the rules and the dashboard name no metric"
    assert named <= exported, sorted(named - exported)


@pytest.fixture
async def api_metrics(make_api: AppFactory) -> str:
    async with make_api() as api:
        answer = await api.client.get("/metrics")
        assert answer.status_code == 200
        return str(answer.text)


@contextmanager
def prometheus_scraping(target: str, run_dir: Path) -> Iterator[str]:
    binary = _tool("prometheus")
    port = free_port()
    run_dir.mkdir()
    rules = (PROMETHEUS / "stockguard.rules.yml").resolve()
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
    config = config.replace("evaluation_interval: 15s", "evaluation_interval: 1s")
    config = config.replace("- stockguard.rules.yml", f"- {rules}")
    config = config.replace('"127.0.0.1:8000"', f'"{target}"')
    (run_dir / "prometheus.yml").write_text(config)
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={run_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(run_dir / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(POLLS_MAX):
            assert process.poll() is None, (run_dir / "prometheus.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(POLL_S)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _query(url: str, expr: str) -> dict[str, object]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, object] = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (expr, body)
    return body


@pytest.mark.parametrize("backend", ["postgres"])
async def test_prometheus_reads_the_exact_holds_of_a_flash_sale_on_two_workers(
    serve: Serve, db_url: str, tmp_path: Path
) -> None:
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_POOL_SIZE": "4"}
    with serve("--db", db_url, "--workers", "2", env=env) as served:
        target = served.url.removeprefix("http://")
        with prometheus_scraping(target, tmp_path / "prometheus") as prometheus:
            async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
                stock = await client.put(
                    "/v1/stock/HOT", json={"on_hand": 100}, headers=bearer(ADMIN_TOKEN)
                )
                assert stock.status_code == 200, stock.text
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/v1/reservations",
                            json={"order_id": f"o-{n}", "items": [{"sku": "HOT", "quantity": 1}]},
                        )
                        for n in range(300)
                    )
                )
            held = sum(1 for answer in answers if answer.status_code == 201)
            assert held == 100

            expr = 'sum(stockguard_reservations_total{outcome="held"})'
            seen = None
            for _ in range(POLLS_MAX):
                result = _query(prometheus, expr)["data"]["result"]  # type: ignore[index]
                seen = float(result[0]["value"][1]) if result else None
                if seen == held:
                    break
                await asyncio.sleep(POLL_S)
            assert seen == held
            recorded: object = []
            for _ in range(POLLS_MAX):  # the recording rule needs two scrapes in its window
                recorded = _query(prometheus, "stockguard:reservations:rate1m")["data"]["result"]  # type: ignore[index]
                if recorded:
                    break
                await asyncio.sleep(POLL_S)
            assert recorded
            for query in _dashboard_queries():
                _query(prometheus, query)  # accepted: parses and evaluates
