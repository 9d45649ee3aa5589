"""The log lines of the real ``stockguard serve``: one format for every line once it runs
(granian's own included), JSON or logfmt by setting, each with timestamp, level and
logger; the access line with its request id (taken from ``X-Request-ID`` and returned
in the answer) and order id; no access line and no made-up id when the log is off."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx

from .support import ADMIN_TOKEN, Served, bearer

Serve = Callable[..., AbstractContextManager[Served]]
TS = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
LOG_WAIT_S_MAX = 10.0


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert TS.match(line["ts"]), line
        assert line["level"] in {"debug", "info", "warning", "error", "critical"}, line
        assert line["logger"], line
    return lines


def _logfmt(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(line))


def _wait_for(path: Path, needle: str) -> str:
    deadline = time.monotonic() + LOG_WAIT_S_MAX  # a bound on polling, not a measure
    while True:
        text = path.read_text()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def _setup(client: httpx.Client) -> str:
    created = client.post(
        "/v1/products",
        json={"name": "Logged", "initial_on_hand": 5},
        headers=bearer(ADMIN_TOKEN),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["variants"][0]["sku"])


def test_json_logs_with_the_access_line_and_request_ids(serve: Serve, tmp_path: Path) -> None:
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    with (
        serve("--db", f"sqlite:///{tmp_path}/logs.db", "--access-log", env=env) as served,
        httpx.Client(base_url=served.url) as client,
    ):
        sku = _setup(client)
        body = {"order_id": "order-logged-1", "items": [{"sku": sku, "quantity": 1}]}
        held = client.post("/v1/reservations", json=body, headers={"X-Request-ID": "req-42.a"})
        assert held.status_code == 201, held.text
        assert held.headers["x-request-id"] == "req-42.a"

        # Through FastAPI (not a lean route) too; a malformed id is replaced, not echoed.
        for hostile in ("x" * 129, "bad id", 'quote"d', "line\tbreak"):
            listed = client.get(
                "/v1/reservations", headers={**bearer(ADMIN_TOKEN), "X-Request-ID": hostile}
            )
            assert listed.status_code == 200
            made = listed.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{16}", made), made

        plain = client.get("/healthz")
        made_for_healthz = plain.headers["x-request-id"]  # the access log is on: one is made

        stdout = _wait_for(served.stdout, made_for_healthz)
        served.stop()
        access = _json_lines(stdout)
        everything = access + _json_lines(served.stderr.read_text())

    by_id = {line.get("request_id"): line for line in access}
    reserve = by_id["req-42.a"]
    assert reserve["logger"] == "stockguard.http"
    assert reserve["level"] == "info"
    assert reserve["method"] == "POST"
    assert reserve["path"] == "/v1/reservations"
    assert reserve["status"] == 201
    assert reserve["order_id"] == "order-logged-1"
    assert reserve["duration_ms"] >= 0
    assert by_id[made_for_healthz]["path"] == "/healthz"
    assert not any(hostile in stdout for hostile in ("bad id", "x" * 129))

    loggers = {line["logger"] for line in everything}
    assert "_granian" in loggers  # the server's own lines, in the same format
    assert "stockguard.serve" in loggers
    assert not any("loading Redis" in line["msg"] for line in everything)


def test_logfmt_without_access_log(serve: Serve, tmp_path: Path) -> None:
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_LOG_FORMAT": "logfmt"}
    with (
        serve("--db", f"sqlite:///{tmp_path}/logs.db", env=env) as served,
        httpx.Client(base_url=served.url) as client,
    ):
        given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"  # returned when given
        assert "x-request-id" not in client.get("/healthz").headers  # none made: log off
        served.stop()
        stdout = served.stdout.read_text()
        stderr = served.stderr.read_text()

    assert stdout == ""  # no access line
    lines = [_logfmt(line) for line in stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert TS.match(line["ts"]), line
        assert line["level"] in {"info", "warning", "error"}, line
        assert line["logger"], line
    banner = next(line for line in lines if line["logger"] == "stockguard.serve")
    assert banner["msg"].startswith("stockguard ")
    assert banner["strategy"] == "coalescing"
