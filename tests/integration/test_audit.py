"""The audit trail through real clients: decision records and outcomes, session recording and
replay, verify, and a gateway killed under pgbench load that loses no record of a forwarded statement."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from enforcer.audit.sessions import SessionStore
from tests.conftest import REPO, SHIPPED_POLICY, GatewayProcess

pytestmark = pytest.mark.integration


def pgwarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def recorded(gateway_factory: Any, workdir: Path) -> GatewayProcess:
    store = workdir / "recorded-sessions.sqlite"
    return gateway_factory(
        policy={"paths": [str(SHIPPED_POLICY)]},
        audit={"sessions": {"store": str(store), "record_rows": True, "max_rows_per_statement": 2}},
    )


def session_statements(
    gw: GatewayProcess, store: Path, n: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def ready() -> Any:
        s = SessionStore(str(store))
        try:
            sessions = s.list_sessions(limit=1)
            if sessions and sessions[0]["ended_at"] and len(s.statements(sessions[0]["id"])) >= n:
                return sessions[0], s.statements(sessions[0]["id"])
            return None
        finally:
            s.close()

    result = wait_for(ready)
    assert isinstance(result, tuple)
    return result


def test_every_action_is_recorded_with_its_outcome(recorded: GatewayProcess, workdir: Path) -> None:
    store = workdir / "recorded-sessions.sqlite"
    with psycopg.connect(recorded.dsn(application_name="audit-test"), autocommit=True) as conn:
        assert len(conn.execute("SELECT name FROM products ORDER BY id").fetchall()) == 4
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE products")  # deny
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM customers")  # mask (refused: masking is not enabled yet)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE products SET price = 1 WHERE id = 1")  # review (refused: no approvals)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / (id - id) FROM products")  # allowed, fails in Postgres
        conn.execute("SELECT name FROM products WHERE id = %s", (2,))  # extended protocol
    session, statements = session_statements(recorded, store, 6)

    assert session["subject"] == "ci-bot" and session["connection"] == "demo"
    assert session["application_name"] == "audit-test" and session["tls"] is True
    assert session["end_reason"] == "client terminated"
    by_sql = {s["sql"]: s for s in statements}
    ok = by_sql["SELECT name FROM products ORDER BY id"]
    assert (ok["action"], ok["forwarded"], ok["command_tag"], ok["rows"]) == ("allow", True, "SELECT 4", 4)
    assert ok["columns"] == ["name"] and len(ok["result_rows"]) == 2 and ok["rows_truncated"] is True
    for sql, action in (
        ("DROP TABLE products", "deny"),
        ("SELECT email FROM customers", "mask"),
        ("UPDATE products SET price = 1 WHERE id = 1", "review"),
    ):
        st = by_sql[sql]
        assert (st["action"], st["forwarded"], st["error_sqlstate"]) == (action, False, "42501"), st
    failed = by_sql["SELECT 1 / (id - id) FROM products"]
    assert (failed["forwarded"], failed["error_sqlstate"]) == (True, "22012")
    ext = by_sql["SELECT name FROM products WHERE id = $1"]
    assert (ext["protocol"], ext["command_tag"], ext["result_rows"]) == (
        "extended",
        "SELECT 1",
        [["Trackball mouse"]],
    )
    assert [s["seq"] for s in statements] == sorted(s["seq"] for s in statements)

    # The decision log has one decision per statement and an outcome tied to it by decision_id.
    decisions = {d["decision_id"]: d for d in recorded.decisions()}
    # Outcome records wait in memory for a few hundred milliseconds (they are written in batches).
    wanted = {st["decision_id"] for st in statements}

    def all_outcomes() -> dict[str, Any] | None:
        found = {r["decision_id"]: r for r in recorded.outcomes()}
        return found if wanted <= set(found) else None

    outcomes = wait_for(all_outcomes)
    for st in statements:
        d = decisions[st["decision_id"]]
        assert d["result"]["action"] == st["action"]
        assert d["enforcement"]["session"] == session["id"]
        out = outcomes[st["decision_id"]]
        assert out["forwarded"] == st["forwarded"] and out["command_tag"] == st["command_tag"]
    assert outcomes[ok["decision_id"]]["rows"] == 4
    assert outcomes[failed["decision_id"]]["error"]["sqlstate"] == "22012"

    # A running gateway's chain verifies (open: no close record yet).
    res = pgwarden("audit", "verify", "--config", str(recorded.config_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok   test-w0:" in res.stdout and "open" in res.stdout

    # sessions list / show / replay read the same store.
    res = pgwarden("sessions", "list", "--store", str(store), "--identity", "ci-bot", "--outcome", "refused")
    assert res.returncode == 0, res.stderr
    assert session["id"] in res.stdout
    res = pgwarden("sessions", "list", "--store", str(store), "--identity", "nobody")
    assert "no recorded sessions match" in res.stdout
    res = pgwarden("sessions", "replay", session["id"][:8], "--store", str(store), "--speed", "max")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    order = [out.index(s["sql"].split()[0] + " " + s["sql"].split()[1]) for s in statements[:2]]
    assert order == sorted(order)
    for text in ("ci-bot", "DROP TABLE products", "deny", "Mechanical keyboard", "ERROR 42501", "22012"):
        assert text in out, text
    res = pgwarden("sessions", "show", session["id"], "--store", str(store), "--format", "json")
    assert json.loads(res.stdout)["session"]["id"] == session["id"]
    res = pgwarden("sessions", "show", "ffffffffffff", "--store", str(store))
    assert res.returncode == 1 and "no recorded session" in res.stderr


def test_clean_stop_closes_the_chain(gateway_factory: Any) -> None:
    gw = gateway_factory()
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1")
    assert gw.stop() == 0
    assert gw.decision_log is not None
    res = pgwarden("audit", "verify", "--dir", str(gw.decision_log))
    assert res.returncode == 0, res.stdout
    assert "closed" in res.stdout
    # An edit is named by verify.
    (segment,) = sorted((gw.decision_log / "test-w0").glob("0*.jsonl"))
    segment.write_text(segment.read_text().replace('"SELECT 1"', '"SELECT 2"'))
    res = pgwarden("audit", "verify", "--dir", str(gw.decision_log))
    assert res.returncode == 1
    assert re.search(r"FAIL test-w0: 000001\.jsonl:\d+: the record's hash does not match", res.stdout)


def test_sigkill_under_pgbench_loses_no_record_of_a_forwarded_statement(
    gateway_factory: Any, upstream: Any, workdir: Path
) -> None:
    pg = upstream.pg
    pg.psql(
        f"CREATE ROLE audited LOGIN PASSWORD '{upstream.app_password}' IN ROLE app;"
        "ALTER ROLE audited SET log_statement = 'all';"
    )
    gw = gateway_factory(connections={"demo": upstream.connection(user="audited")})
    env = gw.env()
    init = subprocess.run(["pgbench", "-i", "-s", "1", "-q"], capture_output=True, text=True, env=env)
    assert init.returncode == 0, init.stderr
    log_offset = pg.logfile.stat().st_size
    bench = subprocess.Popen(
        ["pgbench", "-S", "-M", "simple", "-c", "4", "-j", "2", "-T", "30", "-n"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill the gateway once load has built up (records are being written).
    wait_for(lambda: len(gw.decisions()) > 2000, timeout=30)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    bench.wait(60)
    time.sleep(0.5)  # let Postgres finish logging the last statements of its backends

    assert gw.decision_log is not None
    # Records stored in the journal but not yet copied into the segment when the process died
    # are appended by `audit recover` (or by the gateway's next start).
    res = pgwarden("audit", "recover", "--dir", str(gw.decision_log))
    assert res.returncode == 0, res.stdout
    assert re.search(r"ok   \S+: (recovered \d+ record\(s\) from the journal|nothing to recover)", res.stdout)
    res = pgwarden("audit", "verify", "--dir", str(gw.decision_log))
    assert res.returncode == 0, res.stdout  # every whole record chains; no close record
    assert "open" in res.stdout

    with open(pg.logfile, "rb") as f:
        f.seek(log_offset)
        tail = f.read().decode("utf-8", "replace")
    executed = collections.Counter(
        m.group(1).strip().rstrip(";") for m in re.finditer(r"LOG:  statement: (SELECT abalance[^\n]*)", tail)
    )
    assert sum(executed.values()) > 1000
    recorded = collections.Counter(
        d["input"]["statement"]["text"].strip().rstrip(";")
        for d in gw.decisions()
        if d["enforcement"]["forwarded"] and d["input"]["statement"]["text"].startswith("SELECT abalance")
    )
    missing = executed - recorded
    assert not missing, f"{sum(missing.values())} statements reached Postgres without a decision record"
