"""The API server runs inside the caller's event loop, leaves its signals alone, and stops cleanly."""

from __future__ import annotations

import signal

import httpx
import pytest

from enforcer.api.app import close_app, create_app
from enforcer.api.server import serve_api
from tests.unit.api.conftest import Auth


async def test_serves_in_the_running_loop_and_stops(auth: Auth, store_url: str) -> None:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("auditors",))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = await serve_api(app, "127.0.0.1", 0)
    try:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).text == "ok"
            r = await client.get("/api/sessions", headers={"Authorization": f"Bearer {auth.token()}"})
            assert r.status_code == 200 and len(r.json()) == 3
        # The gateway owns SIGTERM/SIGINT; uvicorn must not have replaced their handlers.
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
        with pytest.raises(OSError):
            await serve_api(app, "127.0.0.1", server.port)  # the port is taken: an error, not an exit
    finally:
        await server.stop()
        close_app(app)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{server.port}/healthz")
