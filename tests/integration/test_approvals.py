"""Held statements through real clients: psql and psycopg wait for a person, then run exactly once.

Decisions are taken through a second ApprovalService on the same store, as another gateway
instance (or the API of another worker) would: the waiting gateway sees them by polling the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from enforcer.approvals.service import ApprovalRefused, ApprovalService, ApprovalSettings
from enforcer.approvals.store import ApprovalStore
from enforcer.identity import Identity
from tests.conftest import SHIPPED_POLICY, GatewayProcess

pytestmark = pytest.mark.integration

APPROVER = Identity("alice-dba", "pgwarden", ("dba",), "gateway-token", time.time() + 3600)
HELD = re.compile(r"held for approval (apr_[0-9a-f]+)")


def probe(upstream: Any, sql: str) -> str:
    return upstream.pg.psql(sql, database="demo", user="app", password=upstream.app_password).strip()


@pytest.fixture(scope="module")
def policy_dir(workdir: Path) -> Path:
    """The shipped policy with a 3-second approval wait, so that timeouts are quick to test."""
    target = workdir / "policy-approvals"
    if not target.exists():
        shutil.copytree(SHIPPED_POLICY, target)
        data_file = target / "pgwarden" / "data.json"
        data = json.loads(data_file.read_text())
        data["config"]["review"]["timeout_seconds"] = 3
        data_file.write_text(json.dumps(data))
    return target


@pytest.fixture(scope="module")
def store_path(workdir: Path) -> Path:
    return workdir / "approvals.sqlite"


@pytest.fixture(scope="module")
def gw(gateway_factory: Any, policy_dir: Path, store_path: Path, upstream: Any) -> GatewayProcess:
    probe(upstream, "CREATE TABLE IF NOT EXISTS approval_probe (id int PRIMARY KEY, v int NOT NULL)")
    return gateway_factory(
        policy={"paths": [str(policy_dir)]},
        approvals={"store": str(store_path), "poll_interval": "50ms", "public_url": "http://approvals.test"},
    )


@pytest.fixture
def other_instance(store_path: Path) -> Iterator[ApprovalService]:
    """Decides as another gateway instance sharing the store would."""
    service = ApprovalService(ApprovalStore(str(store_path)), ApprovalSettings(instance="other"))
    yield service
    service.store.close()


@pytest.fixture
def row(upstream: Any) -> int:
    rid = int(time.time() * 1000) % 1_000_000_000
    probe(upstream, f"INSERT INTO approval_probe VALUES ({rid}, 0)")
    return rid


def decide(
    service: ApprovalService, approval_id: str, approve: bool, reason: str = "", who: Identity = APPROVER
) -> Any:
    return asyncio.run(service.decide(approval_id, who, approve=approve, reason=reason))


def wait_for_request(service: ApprovalService, sql_fragment: str, state: str = "pending") -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for req in service.store.list_requests([state]):
            if sql_fragment in req.sql:
                return req
        time.sleep(0.05)
    raise AssertionError(f"no {state} request for {sql_fragment!r}")


def test_psql_waits_shows_the_notice_and_runs_once_approved(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    sql = f"UPDATE approval_probe SET v = v + 1 WHERE id = {row}"
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env=gw.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    notice = proc.stderr.readline()  # psql prints the NOTICE while it waits
    m = HELD.search(notice)
    assert m, notice
    approval_id = m.group(1)
    assert f"pgwarden approvals approve {approval_id}" in notice
    assert f"http://approvals.test/approvals/{approval_id}" in notice
    assert proc.poll() is None
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "0"  # nothing ran yet

    req = other_instance.store.get(approval_id)
    assert req is not None and req.state == "pending" and req.sql == sql and req.approvers == ["dba"]
    assert req.subject == "ci-bot" and req.connection == "demo" and req.params is None
    decide(other_instance, approval_id, True, "looks fine")
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.strip() == "UPDATE 1"
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "1"
    done = other_instance.store.get(approval_id)
    assert done is not None and done.state == "executed" and done.decided_by == "alice-dba"
    # Every approval event is on the record, in the hash-chained decision log.
    events = [
        r["approval"]["event"]
        for r in gw.log_records()
        if r.get("event") == "approval" and r["approval"]["approval_id"] == approval_id
    ]
    assert events == ["requested", "executed"]  # "approved" was recorded by the deciding instance


def test_rejection_names_the_approver_and_reason(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        sql = f"DELETE FROM approval_probe WHERE id = {row}"
        t = threading.Thread(
            target=lambda: decide(
                other_instance, wait_for_request(other_instance, sql).id, False, "not today"
            )
        )
        t.start()
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute(sql)
        t.join()
        assert "alice-dba rejected this statement" in str(info.value) and "not today" in str(info.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    assert probe(upstream, f"SELECT count(*) FROM approval_probe WHERE id = {row}") == "1"


def test_timeout_then_approval_then_retry_runs_exactly_once(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    sql = f"UPDATE approval_probe SET v = v + 10 WHERE id = {row}"
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            cur.execute(sql)
        m = re.search(r"approval (apr_[0-9a-f]+)", str(info.value))
        assert m, str(info.value)
        approval_id = m.group(1)
        assert "was not decided within 3s" in str(info.value)
        req = other_instance.store.get(approval_id)
        assert req is not None and req.state == "timed_out"
        decide(other_instance, approval_id, True)
        assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "0"
        cur.execute(sql)  # the identical statement, re-sent: runs at once, exactly once
        assert cur.statusmessage == "UPDATE 1"
        assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "10"
        # A third attempt is a new request: the approval was single-use.
        with pytest.raises(psycopg.errors.QueryCanceled):
            cur.execute(sql)
        # A different statement (other text) never rides on someone else's approval.
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "10"


def test_four_eyes_and_approver_groups(gw: GatewayProcess, other_instance: ApprovalService, row: int) -> None:
    sql = f"UPDATE approval_probe SET v = 5 WHERE id = {row}"
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:

        def attempts() -> None:
            req = wait_for_request(other_instance, sql)
            me = Identity("ci-bot", "pgwarden", ("dba", "agents"), "gateway-token", time.time() + 600)
            with pytest.raises(ApprovalRefused, match="cannot approve their own request"):
                decide(other_instance, req.id, True, who=me)
            outsider = Identity("bob", "pgwarden", ("agents",), "gateway-token", time.time() + 600)
            with pytest.raises(ApprovalRefused, match="not in a group that may decide"):
                decide(other_instance, req.id, True, who=outsider)
            decide(other_instance, req.id, False, "checked the four-eyes rule")

        t = threading.Thread(target=attempts)
        t.start()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        t.join()


def test_pipelined_extended_protocol_waits_in_order(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        t = threading.Thread(
            target=lambda: decide(
                other_instance, wait_for_request(other_instance, "UPDATE approval_probe SET v = $1").id, True
            )
        )
        t.start()
        with conn.pipeline():
            c1 = conn.execute("SELECT v FROM approval_probe WHERE id = %s", (row,))
            c2 = conn.execute("UPDATE approval_probe SET v = %s WHERE id = %s", (42, row))
            c3 = conn.execute("SELECT v FROM approval_probe WHERE id = %s", (row,))
        t.join()
        assert c1.fetchone() == (0,) and c2.rowcount == 1 and c3.fetchone() == (42,)
    executed = other_instance.store.list_requests(["executed"])
    req = [r for r in executed if r.protocol == "extended" and r.sql.startswith("UPDATE approval_probe")]
    assert req, [(r.sql, r.params) for r in executed]
    assert req[0].params is not None and len(req[0].params) == 2


def test_rejected_inside_a_transaction_aborts_it(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    sql = f"UPDATE approval_probe SET v = 7 WHERE id = {row}"
    with psycopg.connect(gw.dsn()) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("SELECT 1")  # opens the transaction block
        t = threading.Thread(
            target=lambda: decide(other_instance, wait_for_request(other_instance, sql).id, False, "no")
        )
        t.start()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(sql)
        t.join()
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
        conn.rollback()


def test_cancel_while_waiting_withdraws_the_request(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int
) -> None:
    sql = f"UPDATE approval_probe SET v = 99 WHERE id = {row}"
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        found: list[Any] = []

        def cancel() -> None:
            found.append(wait_for_request(other_instance, sql))
            conn.cancel_safe()

        t = threading.Thread(target=cancel)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            conn.execute(sql)
        t.join()
        assert "withdrawn" in str(info.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    req = other_instance.store.get(found[0].id)
    assert req is not None and req.state == "withdrawn"
    with pytest.raises(ApprovalRefused, match="is withdrawn, not pending"):
        decide(other_instance, req.id, True)
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "0"


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_disconnect_while_waiting_withdraws_and_never_runs(
    gw: GatewayProcess, other_instance: ApprovalService, upstream: Any, row: int, sslmode: str
) -> None:
    # Without TLS too: the gateway keeps reading from a client whose statement is held, so that
    # it notices the disconnect (a paused plaintext socket would not report it).
    sql = f"UPDATE approval_probe SET v = 77 WHERE id = {row}"
    env = gw.env(sslmode=sslmode)
    proc = subprocess.Popen(["psql", "-X", "-c", sql], env=env, stderr=subprocess.PIPE, text=True)
    req = wait_for_request(other_instance, sql)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    withdrawn = wait_for_request(other_instance, sql, state="withdrawn")
    assert withdrawn.id == req.id
    with pytest.raises(ApprovalRefused, match="withdrawn"):
        decide(other_instance, req.id, True)
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "0"


def test_restart_marks_waiting_requests_abandoned_and_the_retry_path_still_works(
    gateway_factory: Any, policy_dir: Path, workdir: Path, upstream: Any, row: int
) -> None:
    store = workdir / "approvals-restart.sqlite"
    cfg = {
        "policy": {"paths": [str(policy_dir)]},
        "approvals": {"store": str(store), "poll_interval": "50ms"},
    }
    first = gateway_factory(**cfg)
    service = ApprovalService(ApprovalStore(str(store)), ApprovalSettings(instance="other"))
    sql = f"UPDATE approval_probe SET v = 123 WHERE id = {row}"
    proc = subprocess.Popen(["psql", "-X", "-c", sql], env=first.env(), stderr=subprocess.PIPE, text=True)
    req = wait_for_request(service, sql)
    first.proc.send_signal(signal.SIGKILL)  # the gateway dies while the client waits
    first.proc.wait(10)
    proc.wait(10)
    second = gateway_factory(**cfg)
    abandoned = wait_for_request(service, sql, state="abandoned")
    assert abandoned.id == req.id
    decide(service, req.id, True, "ran it after the restart")
    with psycopg.connect(second.dsn(), autocommit=True) as conn:
        assert conn.execute(sql).rowcount == 1
    assert probe(upstream, f"SELECT v FROM approval_probe WHERE id = {row}") == "123"
    service.store.close()
