"""The relay's HTTP/1.1 client (``events/http1.py``) against real local servers that answer
the ways servers do: kept alive, closing after each answer, closing an idle connection
without saying so, chunked, 204 without a length, an interim 100, a body to the end of the
connection, a 500 or a dropped connection in the middle of a sale.

The end-to-end tests run a real relay on SQLite: whatever the receiver does, every event
arrives and the ids of ALL the requests it saw (failed ones included) never go down, i.e.
no event was sent before the one ahead of it was delivered (docs/events.md#guarantees).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stockguard.engine import Engine
from stockguard.events.http1 import Http1Connection
from stockguard.events.relay import Relay
from stockguard.events.state import Endpoint, new_secret
from stockguard.events.webhooks import EndpointClient
from stockguard.stores.sql.store import SqlStore

from .test_webhooks import FAST, committed, eventually, sale
from .verifier import verify

pytestmark = [pytest.mark.asyncio]

OK_KEPT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Script:
    """A raw HTTP/1.1 server: ``answer(n, id)`` gives the bytes for the n-th request
    (the event id from ``webhook-id``, else 0); None drops the connection unanswered."""

    answer: Callable[[int, int], bytes | None]
    close_after: bool = False
    """Close every connection after its answer, without saying so in a header."""
    seen: list[int] = field(default_factory=list)
    """The id of every request received, answered or not, in arrival order."""
    accepted: list[int] = field(default_factory=list)
    connections: int = 0
    secret: str | None = None
    bad_signatures: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                event_id = int(headers.get("webhook-id", "0"))
                if self.secret is not None:
                    try:
                        verify(self.secret, headers, body)
                    except Exception:
                        self.bad_signatures += 1
                n = len(self.seen)
                self.seen.append(event_id)
                answer = self.answer(n, event_id)
                if answer is None:
                    return
                if answer.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                    self.accepted.append(event_id)
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def post(n: int) -> bytes:
    return b"POST /hook HTTP/1.1\r\nHost: x\r\nwebhook-id: %d\r\ncontent-length: 2\r\n\r\n{}" % n


async def test_a_kept_alive_connection_carries_every_request() -> None:
    script = Script(lambda n, _: OK_KEPT)
    async with scripted(script) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        answers = [await connection.send(post(n)) for n in range(1, 21)]
        connection.close()
    assert answers == [(200, b"ok")] * 20
    assert script.connections == 1
    assert script.seen == list(range(1, 21))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",  # no length: 204 has no body
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
    ],
)
async def test_answers_framed_every_way_keep_the_connection(answer: bytes) -> None:
    script = Script(lambda n, _: answer)
    async with scripted(script) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        statuses = [(await connection.send(post(n)))[0] for n in range(1, 6)]
        connection.close()
    assert all(200 <= s < 300 for s in statuses)
    assert script.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",  # 1.0 without keep-alive
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n\r\nok",  # the body runs to the end of the connection
    ],
)
async def test_answers_that_end_the_connection_get_a_new_one(answer: bytes) -> None:
    script = Script(lambda n, _: answer, close_after=True)
    async with scripted(script) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        answers = [await connection.send(post(n)) for n in range(1, 6)]
        connection.close()
    assert answers == [(200, b"ok")] * 5
    assert script.connections == 5


async def test_an_idle_connection_the_server_closed_silently_is_replaced() -> None:
    """The server keeps nothing alive but says so in no header: the next request goes on
    a new connection, not reported as failed."""
    script = Script(lambda n, _: OK_KEPT, close_after=True)
    async with scripted(script) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        for n in range(1, 6):
            assert await connection.send(post(n)) == (200, b"ok")
            await asyncio.sleep(0.05)  # the server's close arrives while idle
        connection.close()
    assert script.accepted == [1, 2, 3, 4, 5]


async def test_no_answer_is_a_connection_error_and_garbage_a_protocol_error() -> None:
    dropped = Script(lambda n, _: None)
    async with scripted(dropped) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        with pytest.raises(ConnectionError):
            await connection.send(post(1))
    garbage = Script(lambda n, _: b"SSH-2.0-OpenSSH\r\n\r\n")
    async with scripted(garbage) as port:
        connection = Http1Connection("127.0.0.1", port, 5.0)
        with pytest.raises(ConnectionError, match="bad HTTP answer"):
            await connection.send(post(1))
        connection.close()


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def relay_through(engine: Engine, script: Script, port: int) -> list[int]:
    """A sale delivered by a real relay to ``port``; returns the committed ids."""
    from stockguard.events import state

    assert isinstance(engine.store, SqlStore)
    endpoint = await state.create_endpoint(
        engine.store, f"http://127.0.0.1:{port}/hook", None, "all", True, "scripted"
    )
    script.secret = endpoint.secret
    relay = Relay(engine.store, FAST)
    relay.start()
    expected: list[int] = []
    try:
        await sale(engine, ["A", "B"], 30)

        async def all_there() -> bool:
            nonlocal expected
            expected = [e.id for e in await committed(engine)]
            return bool(expected) and sorted(set(script.accepted)) == expected

        await eventually(all_there, "every committed event accepted")
    finally:
        await relay.stop()
    return expected


@pytest.mark.parametrize("failure", ["500", "dropped", "silently closed"])
async def test_a_failure_in_the_middle_keeps_every_request_in_id_order(
    db_url: str, failure: str
) -> None:
    """The 10th and 20th requests fail (a 500; the connection dropped without an answer;
    or, for "silently closed", every connection is closed after each answer with no
    header saying so): every event arrives, and no request ever carried an id below one
    sent before it, so no event overtook a failed one."""
    answers = {
        "500": b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n",
        "dropped": None,
        "silently closed": OK_KEPT,
    }

    def answer(n: int, _: int) -> bytes | None:
        return answers[failure] if n in (10, 20) else OK_KEPT

    script = Script(answer, close_after=failure == "silently closed")
    engine = await Engine.open(db_url, "conditional", migrate=False)
    try:
        async with scripted(script) as port:
            expected = await relay_through(engine, script, port)
    finally:
        await engine.close()
    assert script.bad_signatures == 0
    assert script.seen == sorted(script.seen), "an event went out before the one ahead of it"
    first_accepted = list(dict.fromkeys(script.accepted))
    assert first_accepted == expected
    if failure != "silently closed":
        assert len(script.seen) > len(set(script.seen)), "the failed events were retried"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl (as tests/service does)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed (Debian package openssl; .ci/run installs it)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_is_checked_against_the_ca_bundle_and_kept_alive(
    certificate: tuple[Path, Path],
) -> None:
    """Over TLS the connection is kept alive too; an endpoint whose certificate no CA of
    the bundle signed is a failed attempt naming the check, never a delivery."""
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    script = Script(lambda n, _: OK_KEPT)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        connection = Http1Connection("127.0.0.1", port, 5.0, trusting)
        answers = [await connection.send(post(n)) for n in range(1, 6)]
        connection.close()
        assert answers == [(200, b"ok")] * 5
        assert script.connections == 1
        endpoint = Endpoint("e", f"https://127.0.0.1:{port}/hook", new_secret(), "all", True, "", 0)
        async with httpx.AsyncClient() as fallback:
            poster = EndpointClient(endpoint, 5.0, fallback)
            attempt = await poster.post("1", b"{}")
            poster.close()
        assert not attempt.ok
        assert attempt.error is not None and "CERTIFICATE_VERIFY_FAILED" in attempt.error
    finally:
        server.close()
