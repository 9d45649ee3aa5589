"""A userspace TCP proxy between ``serve`` and its database that injects network faults.

The kernel of the test machines has no ``sch_netem`` (``tc qdisc add … netem`` answers
"Specified qdisc kind is unknown"), so faults are made here, in asyncio:

* ``reset_all()`` aborts every forwarded connection at once (both sides see a reset, as
  when a database or a NAT drops them): connections cut mid-transaction;
* ``latency_s`` delays every chunk in both directions (per chunk, in order);
* ``blackhole`` stops forwarding without closing anything (a partition: the database
  side sees silence, the client side waits; new connections are accepted and stall);
  lifting it delivers what was held back, as TCP would after the partition heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.latency_s: tuple[float, float] = (0.0, 0.0)
        """(low, high): each chunk waits a uniform time in this range."""
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.resets = 0

    @property
    def blackhole(self) -> bool:
        return not self._open.is_set()

    @blackhole.setter
    def blackhole(self, on: bool) -> None:
        if on:
            self._open.clear()
        else:
            self._open.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        self._open.set()
        if self._server is not None:
            self._server.close()
            self.reset_all()
            await self._server.wait_closed()
            self._server = None

    def reset_all(self) -> int:
        """Aborts every live forwarded connection (both ends); how many there were."""
        writers = list(self._links)
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._links.clear()
        cut = len(writers) // 2
        self.resets += cut
        return cut

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await self._open.wait()
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        self._links |= {client_w, server_w}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
                while chunk := await reader.read(65_536):
                    low, high = self.latency_s
                    if high > 0:
                        await asyncio.sleep(random.uniform(low, high))
                    await self._open.wait()
                    writer.write(chunk)
                    await writer.drain()
            writer.transport.abort()
            self._links.discard(writer)

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))
