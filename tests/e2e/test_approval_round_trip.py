"""The whole approval story in a real browser: a psycopg client's write waits in the gateway
(in front of a real Postgres), an approver clicks Approve on the live page, the client gets its
result, and the row changed exactly once."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from enforcer.localpg import free_port
from tests.conftest import SHIPPED_POLICY
from tests.e2e.conftest import CHROMIUM, browser_page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_client_waits_until_the_page_approves(
    browser: Any, gateway_factory: Any, upstream: Any, workdir: Any
) -> None:
    upstream.pg.psql(
        "CREATE TABLE IF NOT EXISTS e2e_probe (id int PRIMARY KEY, v int NOT NULL);"
        "INSERT INTO e2e_probe VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET v = 0",
        database="demo",
        user="app",
        password=upstream.app_password,
    )
    api = free_port()
    gw = gateway_factory(
        policy={"paths": [str(SHIPPED_POLICY)]},
        approvals={"store": str(workdir / "e2e-approvals.sqlite"), "poll_interval": "50ms"},
        api={"listen": f"127.0.0.1:{api}"},
    )
    sql = "UPDATE e2e_probe SET v = v + 1 WHERE id = 1"
    notices: list[str] = []
    result: list[Any] = []

    def client() -> None:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            result.append(conn.execute(sql).rowcount)

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 10
    while not notices and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notices and "held for approval" in notices[0], notices
    approval_id = notices[0].split("held for approval ")[1].split(";")[0]
    assert f"http://127.0.0.1:{api}/approvals/{approval_id}" in notices[0]

    with browser_page(browser, f"http://127.0.0.1:{api}") as page:
        page.goto("/approvals")
        page.fill("#token", gw.token("dora", ("dba",)))
        page.click("#login-submit")
        page.wait_for_url("**/approvals")
        row = page.locator(f'tr[data-approval-id="{approval_id}"]')
        row.wait_for(timeout=6000)
        assert "e2e_probe" in row.inner_text()
        assert result == []  # still waiting
        row.locator('button[data-decide="approve"]').click()
        t.join(15)
    assert result == [1]
    v = upstream.pg.psql(
        "SELECT v FROM e2e_probe WHERE id = 1", database="demo", user="app", password=upstream.app_password
    )
    assert v.strip() == "1"
