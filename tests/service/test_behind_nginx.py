"""``deploy/nginx/stockguard.conf`` in front of the real ``stockguard serve``.

The shipped file is used as it is, with only its ``# stockguard:`` lines rewritten (ports,
paths, the metrics allow-list) and the header timeout shortened so an idle socket is cut
off quickly. Through it: a reservation and a refusal keep their bodies and media types,
the service (not nginx) refuses an oversized body with its problem document, a socket
that never sends a byte is closed, and /metrics is not served to an address that is not
on the allow-list.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .support import ADMIN_TOKEN, Served, assert_problem, bearer, free_port

Serve = Callable[..., AbstractContextManager[Served]]

CONFIG = Path(__file__).parents[2] / "deploy" / "nginx" / "stockguard.conf"
START_S_MAX = 30.0
GUARD_S = 60.0


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        message = "nginx is not installed (Debian: apt-get install nginx-light)"
        if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _rewritten(upstream_port: int, listen_port: int, run_dir: Path) -> str:
    text = CONFIG.read_text()
    replacements = {
        "pid": f"pid {run_dir}/nginx.pid;",
        "error_log": f"error_log {run_dir}/error.log warn;",
        "upstream": f"server 127.0.0.1:{upstream_port};",
        "listen": f"listen 127.0.0.1:{listen_port};",
        "metrics allow": "allow 192.0.2.1;",  # TEST-NET-1: an ACL entry, never contacted
    }
    for marker, line in replacements.items():
        text, count = re.subn(
            rf"^(\s*)\S.*# stockguard: {marker}$", rf"\g<1>{line}", text, flags=re.M
        )
        assert count == 1, marker
    text = text.replace("client_header_timeout 10s;", "client_header_timeout 1s;")
    return text


@contextmanager
def nginx_in_front(served: Served, run_dir: Path) -> Iterator[str]:
    binary = _nginx()
    port = free_port()
    run_dir.mkdir()
    (run_dir / "logs").mkdir()
    config = run_dir / "nginx.conf"
    config.write_text(_rewritten(urlsplit(served.url).port or 0, port, run_dir))
    process = subprocess.Popen(
        [binary, "-p", str(run_dir), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S_MAX
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(GUARD_S)


def test_the_shipped_nginx_config_fronts_the_service(serve: Serve, tmp_path: Path) -> None:
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    with (
        serve("--db", f"sqlite:///{tmp_path}/nginx.db", env=env) as served,
        nginx_in_front(served, tmp_path / "nginx") as url,
        httpx.Client(base_url=url, timeout=GUARD_S) as client,
    ):
        stock = client.put("/v1/stock/A", json={"on_hand": 1}, headers=bearer(ADMIN_TOKEN))
        assert stock.status_code == 200, stock.text
        held = client.post(
            "/v1/reservations", json={"order_id": "o-1", "items": [{"sku": "A", "quantity": 1}]}
        )
        assert held.status_code == 201, held.text
        refused = client.post(
            "/v1/reservations", json={"order_id": "o-2", "items": [{"sku": "A", "quantity": 1}]}
        )
        assert_problem(refused, 409, "out-of-stock")
        too_big = client.post(
            "/v1/reservations",
            content=b"[" + b"1," * 700_000 + b"1]",
            headers={"content-type": "application/json"},
        )
        assert_problem(too_big, 413, "body-too-large")  # the service's, read to its end
        far_too_big = client.post(
            "/v1/reservations",
            content=b"[" + b"1," * 2_000_000 + b"1]",
            headers={"content-type": "application/json"},
        )
        assert_problem(far_too_big, 413, "body-too-large")  # nginx's, in the same form
        assert client.get("/metrics").status_code == 403

        where = urlsplit(url)
        with socket.create_connection((where.hostname or "", where.port or 0)) as idle:
            idle.settimeout(GUARD_S)
            received = b""
            while chunk := idle.recv(65_536):
                received += chunk
        assert received == b"" or received.startswith(b"HTTP/1.1 408"), received
