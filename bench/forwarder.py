"""A plain TCP forwarder on uvloop: the floor of any Python proxy on this machine.

    .venv/bin/python bench/forwarder.py LISTEN_PORT UPSTREAM_PORT [BUSY_POLL_US]

It copies bytes both ways and nothing else: no framing, no authentication, no
decisions, no audit. With BUSY_POLL_US it polls like the gateway with
``listener.busy_poll`` (enforcer/proxy/busypoll.py). bench/run.py measures it in the
same run as pgwarden so that RESULTS.md shows how much of pgwarden's distance to a
direct connection is the extra hop through a Python process, and how much is
pgwarden's own work.
Not part of the product; never point a client at it outside a benchmark.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enforcer.proxy.busypoll import BusyPoll

POLL: BusyPoll | None = None


class _Upstream(asyncio.Protocol):
    def __init__(self, client: Any) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        if POLL is not None:
            POLL.kick()
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: Any = None
        self.pending = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client: Any = transport  # uvloop's transports do not subclass asyncio.Transport
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        port = self.upstream_port
        self.upstream, _ = await loop.create_connection(lambda: _Upstream(self.client), "127.0.0.1", port)
        if self.pending:
            self.upstream.write(bytes(self.pending))

    def data_received(self, data: bytes) -> None:
        if POLL is not None:
            POLL.kick()
        if self.upstream is None:
            self.pending += data
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def main(listen_port: int, upstream_port: int, busy_poll_us: int) -> None:
    global POLL
    loop = asyncio.get_running_loop()
    if busy_poll_us > 0:
        POLL = BusyPoll(loop, busy_poll_us / 1e6)
    server = await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0))
