"""Helpers of the service tests: the API client wrapper, problem checks, ``serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "admin-token-for-tests"
API_TOKEN = "api-token-for-tests"
SERVE_START_S_MAX = 60.0
SERVE_STOP_S_MAX = 40.0


@dataclass
class Api:
    """An httpx client on the app, with the few calls most tests need."""

    client: httpx.AsyncClient
    admin: dict[str, str] = field(default_factory=lambda: bearer(ADMIN_TOKEN))

    async def set_stock(self, sku: str, on_hand: int) -> dict[str, Any]:
        answer = await self.client.put(
            f"/v1/stock/{sku}", json={"on_hand": on_hand}, headers=self.admin
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def stock(self, sku: str) -> dict[str, Any]:
        answer = await self.client.get(f"/v1/stock/{sku}", headers=self.admin)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def reserve(self, order_id: str, items: dict[str, int], **extra: Any) -> httpx.Response:
        body = {
            "order_id": order_id,
            "items": [{"sku": sku, "quantity": q} for sku, q in items.items()],
            **extra,
        }
        return await self.client.post("/v1/reservations", json=body)

    async def reservation_count(self) -> int:
        answer = await self.client.get(
            "/v1/reservations", params={"limit": 500}, headers=self.admin
        )
        assert answer.status_code == 200, answer.text
        return len(answer.json()["items"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


DRIVER_TEXT = (
    "[SQL:",
    "[parameters:",
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    " FROM ",
    "sqlalche.me",
)
"""What a driver error's text holds and a problem body must not: statements, bound values
(other buyers' order ids, in a batch) and SQLAlchemy's links. The log gets them."""


def assert_no_driver_text(text: str) -> None:
    leaked = [marker for marker in DRIVER_TEXT if marker in text]
    assert not leaked, f"driver text {leaked} in a problem body: {text[:500]}"


def assert_problem(answer: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The answer is RFC 9457 problem details with this status (and type, when given), and
    carries no driver text."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert_no_driver_text(answer.text)
    body = dict(answer.json())
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    if kind is not None:
        assert body["type"].endswith(f"/problems/{kind}"), body
    return body


AppFactory = Callable[..., AbstractAsyncContextManager[Api]]
"""``make_api(**settings)``: an async context manager yielding an ``Api``."""


# ---------------------------------------------------------------------------- served


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stockguard_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("stockguard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stockguard.cli"]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    env: dict[str, str] = field(default_factory=dict)
    """The environment serve ran with (its data directory is ``XDG_STATE_HOME``'s)."""

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (graceful), then kill if it does not end in time; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(SERVE_STOP_S_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(SERVE_STOP_S_MAX)
                raise AssertionError("stockguard serve ignored SIGTERM") from None
        return int(self.process.returncode)


def _wait_healthy(served: Served) -> None:
    deadline = time.monotonic() + SERVE_START_S_MAX
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"stockguard serve exited early:\n{served.output()}")
        try:
            if httpx.get(f"{served.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(
        f"stockguard serve not healthy in {SERVE_START_S_MAX} s:\n{served.output()}"
    )


def clean_environment(run_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without stockguard's settings, with the data directory
    (where a generated admin token is kept) under ``run_dir``, then ``env``."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("STOCKGUARD_")
    }
    for name in ("PROMETHEUS_MULTIPROC_DIR", "STATE_DIRECTORY"):
        environment.pop(name, None)
    environment["XDG_STATE_HOME"] = str(run_dir / "state")
    environment.update(env or {})
    return environment


def run_command(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``stockguard ARGS`` to its end, as a user runs it: output and exit code."""
    return subprocess.run(
        [*stockguard_command(), *args],
        cwd=tmp_path,
        env=clean_environment(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@contextmanager
def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_port()
    run_dir = tmp_path / f"serve-{port}"
    run_dir.mkdir()
    environment = clean_environment(run_dir, env)
    stdout, stderr = run_dir / "stdout.txt", run_dir / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [*stockguard_command(), "serve", "--port", str(port), *args],
            cwd=run_dir,
            env=environment,
            stdout=out,
            stderr=err,
        )
    served = Served(f"http://127.0.0.1:{port}", process, stdout, stderr, environment)
    try:
        _wait_healthy(served)
        yield served
    finally:
        if served.process.poll() is None:
            served.stop()


def at_default(
    on_hand: int, reserved: int, version: int, safety_stock: int = 0, backorder_max: int = 0
) -> list[dict[str, Any]]:
    """A stock body's ``locations`` for a SKU stocked only at the default location."""
    return [
        {
            "location": "default",
            "on_hand": on_hand,
            "reserved": reserved,
            "available": on_hand + backorder_max - reserved - safety_stock,
            "version": version,
            "safety_stock": safety_stock,
            "backorder_max": backorder_max,
        }
    ]
