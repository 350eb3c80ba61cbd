"""The README's first command: `pgwarden demo` brings up the whole product on one machine."""

from __future__ import annotations

import os
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

from enforcer.localpg import free_port
from tests.approvals_client import approve, wait_for_pending
from tests.conftest import REPO, wait_port

pytestmark = pytest.mark.integration


def test_demo_masks_holds_denies_and_records(workdir: Path) -> None:
    root = workdir / "demo"
    root.mkdir()
    os.chmod(root, 0o755)
    port, api = free_port(), free_port()
    log = workdir / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enforcer.cli",
                "demo",
                "--dir",
                str(root),
                "--port",
                str(port),
                "--api-port",
                str(api),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        wait_port(port, proc, log, timeout=90)
        text = log.read_text()
        assert "psql" in text and f"http://127.0.0.1:{api}/approvals" in text
        agent = (root / "demo.token").read_text().strip()
        reviewer = (root / "reviewer.token").read_text().strip()
        dsn = f"host=127.0.0.1 port={port} dbname=demo user=demo-agent sslmode=require password={agent}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT full_name, email, ssn FROM customers ORDER BY id").fetchall()
            assert len(rows) == 6 and rows[0][1].endswith("@example.com") and rows[0][1] != "ada@example.com"
            assert "123-45-6789" not in str(rows)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM orders")

        result: list[Any] = []
        sql = "UPDATE products SET price = 99 WHERE id = 1"

        def write() -> None:
            with psycopg.connect(dsn, autocommit=True) as c:
                result.append(c.execute(sql).rowcount)

        t = threading.Thread(target=write)
        t.start()
        base = f"http://127.0.0.1:{api}"
        req = wait_for_pending(base, reviewer, sql=sql)
        approve(base, reviewer, req["id"], reason="demo")
        t.join(20)
        assert result == [1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sessions = httpx.get(
                f"{base}/api/sessions", headers={"Authorization": f"Bearer {reviewer}"}
            ).json()
            if len(sessions) >= 2:
                break
            time.sleep(0.2)
        assert {s["subject"] for s in sessions} == {"demo-agent"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "Traceback" not in log.read_text(), log.read_text()
