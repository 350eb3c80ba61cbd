"""Running the HTTP application inside the gateway's own event loop.

Owns: binding the API listener, serving it with uvicorn as a task, and stopping it.
Never: installs signal handlers (the gateway owns SIGTERM/SIGINT/SIGHUP and stops this
server itself), or exits the process when the port cannot be bound (it raises OSError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger("pgwarden.api")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would replace the gateway's signal handlers with its own.
        yield


class ApiServer:
    """A started API server: ``port`` is the bound port (useful with port 0)."""

    def __init__(
        self, app: Starlette, server: uvicorn.Server, task: asyncio.Task[None], host: str, port: int
    ) -> None:
        self.app = app
        self._server = server
        self._task = task
        self.host = host
        self.port = port

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let running requests finish within ``timeout``, then cancel them."""
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self) -> None:
        """Until the server stops (an unexpected error in it is raised here)."""
        await self._task


def _bind(host: str, port: int) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_api(app: Starlette, host: str, port: int) -> ApiServer:
    """Start serving ``app`` on ``host:port`` in the running loop; OSError if the port cannot be bound."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,
        lifespan="off",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="pgwarden-api")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what stopped it
            raise OSError(f"the API server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.01)
    bound = sock.getsockname()[1]
    log.info(
        "API listening on %s:%d",
        host,
        bound,
        extra={"event": "api_listening", "fields": {"host": host, "port": bound}},
    )
    return ApiServer(app, server, task, host, bound)
