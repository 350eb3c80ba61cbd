"""Approval notifications to a real mosquitto broker and a real HTTP webhook receiver."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest

from enforcer.approvals.notify import Notifier
from enforcer.approvals.service import ApprovalService, ApprovalSettings
from enforcer.approvals.store import ApprovalStore
from enforcer.config import MQTTNotifyConfig
from enforcer.identity import Identity
from enforcer.localpg import free_port
from tests.conftest import SHIPPED_POLICY, GatewayProcess

pytestmark = pytest.mark.integration

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
APPROVER = Identity("alice-dba", "pgwarden", ("dba",), "gateway-token", time.time() + 3600)


@pytest.fixture(scope="module")
def broker(workdir: Path) -> Iterator[int]:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (.ci/run installs Debian's mosquitto package)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


class Receiver:
    """A webhook endpoint: records JSON bodies; the first ``fail_first`` requests get HTTP 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.fail_left = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_left > 0:
                    receiver.fail_left -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.put({"path": self.path, "auth": self.headers.get("X-Token"), **body})
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 10) -> dict[str, Any]:
        return self.bodies.get(timeout=timeout)


def collect_mqtt(port: int, topic: str, count: int, ready: threading.Event, out: list[Any]) -> None:
    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(topic, qos=1)
            ready.set()
            async for message in client.messages:
                out.append((str(message.topic), json.loads(message.payload)))  # type: ignore[arg-type]
                if len(out) >= count:
                    return

    asyncio.run(asyncio.wait_for(run(), 30))


def test_events_reach_mqtt_and_webhooks(
    gateway_factory: Any, broker: int, workdir: Path, upstream: Any
) -> None:
    upstream.pg.psql(
        "CREATE TABLE IF NOT EXISTS approval_probe (id int PRIMARY KEY, v int NOT NULL)",
        database="demo",
        user="app",
        password=upstream.app_password,
    )
    plain, slack = Receiver(fail_first=2), Receiver()
    store = workdir / "approvals-notify.sqlite"
    gw: GatewayProcess = gateway_factory(
        policy={"paths": [str(SHIPPED_POLICY)]},
        approvals={
            "store": str(store),
            "poll_interval": "50ms",
            "public_url": "https://gw.example/",
            "notify": {
                "mqtt": {"host": "127.0.0.1", "port": broker, "topic_prefix": "acme/pgwarden"},
                "webhooks": [
                    {"url": f"http://127.0.0.1:{plain.port}/hook", "headers": {"X-Token": "s3"}},
                    {"url": f"http://127.0.0.1:{slack.port}/slack", "format": "slack"},
                ],
            },
        },
    )
    messages: list[Any] = []
    ready = threading.Event()
    listener = threading.Thread(target=collect_mqtt, args=(broker, "acme/pgwarden/#", 2, ready, messages))
    listener.start()
    assert ready.wait(10)

    deciding = ApprovalService(ApprovalStore(str(store)), ApprovalSettings(instance="other"))
    sql = "UPDATE approval_probe SET v = v WHERE id = -1"

    def approve() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = [r for r in deciding.store.list_requests(["pending"]) if r.sql == sql]
            if pending:
                asyncio.run(deciding.decide(pending[0].id, APPROVER, approve=True, reason="ok"))
                return
            time.sleep(0.05)

    t = threading.Thread(target=approve)
    t.start()
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        assert conn.execute(sql).rowcount == 0
    t.join()
    listener.join(30)

    topics = [topic for topic, _ in messages]
    assert topics == ["acme/pgwarden/requested", "acme/pgwarden/executed"]
    requested = messages[0][1]
    assert requested["sql"] == sql and requested["subject"] == "ci-bot" and requested["approvers"] == ["dba"]
    assert messages[1][1]["by"] == "alice-dba" and messages[1][1]["approval_id"] == requested["approval_id"]

    # The JSON webhook was down for its first two attempts: retried, nothing lost, in order.
    first, second = plain.next(), plain.next()
    assert [first["event"], second["event"]] == ["requested", "executed"]
    assert first["auth"] == "s3" and first["approval_id"] == requested["approval_id"]
    text = slack.next()["text"]
    assert text.startswith(f"[pgwarden] {requested['approval_id']} requested") and sql in text
    assert f"https://gw.example/approvals/{requested['approval_id']}" in text
    deciding.store.close()


def test_a_broker_that_is_down_never_blocks_an_approval(workdir: Path) -> None:
    """Events queue while the broker is unreachable and go out, in order, once it is back."""
    port = free_port()

    async def run() -> list[str]:
        notifier = Notifier(mqtt=MQTTNotifyConfig("127.0.0.1", port, "t"), retry_max=4.0)
        await notifier.start()
        for i in range(3):
            notifier.publish("requested", {"approval_id": f"apr_{i}"})  # never blocks
        # Attempts fail at 0, 0.5 and 1.5 s; the next comes at 3.5 s, well after the broker (2 s)
        # and our subscription are up, so no event can reach the broker before someone listens.
        await asyncio.sleep(2.0)
        conf = workdir / "mosquitto-late.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL)
        got: list[str] = []
        try:
            for _ in range(50):
                try:
                    async with aiomqtt.Client("127.0.0.1", port) as sub:
                        await sub.subscribe("t/#", qos=1)
                        async for message in sub.messages:
                            got.append(json.loads(message.payload)["approval_id"])  # type: ignore[arg-type]
                            if len(got) == 3:
                                break
                    break
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.02)
        finally:
            await notifier.stop()
            broker.terminate()
            broker.wait(10)
        return got

    assert asyncio.run(asyncio.wait_for(run(), 30)) == ["apr_0", "apr_1", "apr_2"]


def test_webhook_text_for_people() -> None:
    from enforcer.approvals.notify import event_text

    doc = {
        "approval_id": "apr_9",
        "by": "alice",
        "reason": "ok",
        "subject": "bot",
        "connection": "prod",
        "sql": "DELETE FROM t WHERE id = 1",
    }
    assert event_text("approved", doc, "https://gw/") == (
        "[pgwarden] apr_9 approved by alice: ok — bot on prod: `DELETE FROM t WHERE id = 1` https://gw/approvals/apr_9"
    )
