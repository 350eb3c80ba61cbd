"""--workers N: several processes on one port (SO_REUSEPORT), cancels routed to the owning worker."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_workers_share_the_port_and_route_cancels(gateway_factory) -> None:
    gw = gateway_factory(workers=2)
    time.sleep(1.0)  # both workers bound
    conns = [psycopg.connect(gw.dsn()) for _ in range(8)]
    try:
        for conn in conns:
            timer = threading.Timer(0.3, conn.cancel_safe)
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
            conn.rollback()
            timer.join()
    finally:
        for conn in conns:
            conn.close()
    events = [json.loads(line) for line in gw.logs().splitlines() if line.startswith("{")]
    workers = {e["worker"] for e in events if e["event"] == "listening"}
    assert workers == {0, 1}
    assert sum(1 for e in events if e["event"] == "cancel") == 8
    assert gw.stop() == 0
