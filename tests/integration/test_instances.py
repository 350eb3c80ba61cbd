"""Several gateway instances sharing Postgres stores and an MQTT broker: sessions, approvals and
audit work across them; metrics, health and readiness of one instance."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from enforcer.audit.sessions import SessionStore
from enforcer.localpg import free_port
from tests.approvals_client import approve, wait_for_pending
from tests.conftest import SHIPPED_POLICY, GatewayProcess

pytestmark = pytest.mark.integration


def psql_as_app(upstream: Any, sql: str, database: str = "demo") -> str:
    return upstream.pg.psql(sql, database=database, user="app", password=upstream.app_password).strip()


@pytest.fixture(scope="module")
def shared_db(upstream: Any) -> str:
    """A database on the shared Postgres holding both instances' session and approval stores."""
    upstream.pg.psql("CREATE DATABASE pgwarden_shared OWNER app")
    psql_as_app(upstream, "CREATE TABLE IF NOT EXISTS approval_probe (id int PRIMARY KEY, v int NOT NULL)")
    return f"postgresql://app@127.0.0.1:{upstream.port}/pgwarden_shared"


def start_instance(gateway_factory: Any, name: str, store: str, api_port: int) -> GatewayProcess:
    return gateway_factory(
        policy={"paths": [str(SHIPPED_POLICY)]},
        audit={"instance": name, "sessions": {"store": store}},
        # Polling only every 20 s: a prompt wake-up across instances comes from LISTEN/NOTIFY.
        approvals={"store": store, "poll_interval": "20s"},
        api={"listen": f"127.0.0.1:{api_port}", "auditor_groups": ["auditors"]},
    )


def test_two_instances_share_sessions_approvals_and_audit(
    gateway_factory: Any, shared_db: str, upstream: Any, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    # The stores' password comes from the environment, as in production (never in the URL).
    monkeypatch.setenv("PGPASSWORD", upstream.app_password)
    port_a, port_b = free_port(), free_port()
    a = start_instance(gateway_factory, "gw-a", shared_db, port_a)
    b = start_instance(gateway_factory, "gw-b", shared_db, port_b)
    rid = int(time.time() * 1000) % 1_000_000_000
    psql_as_app(upstream, f"INSERT INTO approval_probe VALUES ({rid}, 0)")
    sql = f"UPDATE approval_probe SET v = 1 WHERE id = {rid}"

    # A client waits on instance B; an approver decides through instance A's API.
    approver = a.token("alice-dba", ("dba",))
    result: list[Any] = []

    def client() -> None:
        with psycopg.connect(b.dsn(), autocommit=True) as conn:
            result.append(conn.execute(sql).rowcount)

    t = threading.Thread(target=client)
    t.start()
    req = wait_for_pending(f"http://127.0.0.1:{port_a}", approver, sql=sql)
    assert req["instance"] == "gw-b-w0"
    assert psql_as_app(upstream, f"SELECT v FROM approval_probe WHERE id = {rid}") == "0"
    approved_at = time.monotonic()
    approve(f"http://127.0.0.1:{port_a}", approver, req["id"], reason="via the other instance")
    t.join(20)
    assert result == [1]
    assert time.monotonic() - approved_at < 5  # woken by the notification, not the 20 s poll
    assert psql_as_app(upstream, f"SELECT v FROM approval_probe WHERE id = {rid}") == "1"

    with psycopg.connect(a.dsn(), autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM products")

    # Both instances' sessions are in the one shared store, and either API shows them.
    store = SessionStore(shared_db)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        instances = {s["instance"] for s in store.list_sessions(limit=50)}
        if {"gw-a-w0", "gw-b-w0"} <= instances:
            break
        time.sleep(0.1)
    assert {"gw-a-w0", "gw-b-w0"} <= instances
    store.close()
    auditor = b.token("audrey", ("auditors",))
    sessions = httpx.get(
        f"http://127.0.0.1:{port_b}/api/sessions", headers={"Authorization": f"Bearer {auditor}"}
    ).json()
    assert {"gw-a-w0", "gw-b-w0"} <= {s["instance"] for s in sessions}

    # Each instance keeps its own verifiable chain; the approval's story spans both.
    for gw in (a, b):
        assert gw.stop() == 0
        assert gw.decision_log is not None
        res = subprocess.run(
            [sys.executable, "-m", "enforcer.cli", "audit", "verify", "--dir", str(gw.decision_log)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout
    events_b = [r["approval"]["event"] for r in b.log_records() if r.get("event") == "approval"]
    events_a = [r["approval"]["event"] for r in a.log_records() if r.get("event") == "approval"]
    assert events_b == ["requested", "executed"] and events_a == ["approved"]


def test_metrics_health_and_readiness(gateway_factory: Any, workdir: Path) -> None:
    api = free_port()
    gw = gateway_factory(
        policy={"paths": [str(SHIPPED_POLICY)]},
        api={"listen": f"127.0.0.1:{api}"},
        listener={"shutdown_grace": "30s"},
        workers=2,
    )
    base = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz").text == "ok":
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    assert httpx.get(f"{base}/readyz").status_code == 200
    for _ in range(6):  # over both workers (SO_REUSEPORT spreads connections)
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.execute("SELECT name FROM products")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DROP TABLE products")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(gw.dsn(password="not-a-token"))
    text = httpx.get(f"{base}/metrics").text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pgwarden_") and " " in line
    }
    assert values['pgwarden_statements_total{action="allow",forwarded="true"}'] >= 6
    assert values['pgwarden_statements_total{action="deny",forwarded="false"}'] >= 6
    assert values['pgwarden_sessions_total{channel="postgres"}'] == 6
    assert values["pgwarden_auth_failures_total"] == 1
    assert values["pgwarden_decision_seconds_count"] >= 2
    assert values["pgwarden_busy_poll_seconds_total"] > 0  # listener.busy_poll is on by default


def test_readiness_fails_while_draining(gateway_factory: Any) -> None:
    api = free_port()
    gw = gateway_factory(api={"listen": f"127.0.0.1:{api}"}, listener={"shutdown_grace": "30s"})
    base = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    # Draining: a session that stays open keeps the gateway up, and /readyz says it is going away.
    conn = psycopg.connect(gw.dsn(), autocommit=True)
    gw.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(f"{base}/readyz").status_code
        time.sleep(0.05)
    r = httpx.get(f"{base}/readyz")
    assert r.status_code == 503 and "not accepting" in r.text
    conn.close()
