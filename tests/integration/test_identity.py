"""Identity in the session: token expiry, upstream logins per group, revocation without restart."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SHIPPED_POLICY

pytestmark = pytest.mark.integration


def test_session_ends_when_its_token_expires(gateway) -> None:
    token = gateway.tokens.issue("ci-bot", ["agents"], 2)
    with psycopg.connect(gateway.dsn(password=token), autocommit=True) as conn:
        # A statement running across the expiry completes; the session ends right after it.
        assert conn.execute("SELECT pg_sleep(2.5), 'completed'").fetchone() == ("", "completed")
        time.sleep(0.2)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("SELECT 1")
        assert "expired" in str(info.value) or conn.broken
    token = gateway.tokens.issue("ci-bot", ["agents"], 1)
    conn = psycopg.connect(gateway.dsn(password=token), autocommit=True)
    time.sleep(1.5)  # idle across the expiry: closed at once
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def test_expiry_grace_is_configurable(gateway_factory) -> None:
    gw = gateway_factory(identity={"session_expiry_grace": "30s"})
    token = gw.tokens.issue("ci-bot", ["agents"], 1)
    with psycopg.connect(gw.dsn(password=token), autocommit=True) as conn:
        time.sleep(1.5)
        assert conn.execute("SELECT 'still in grace'").fetchone() == ("still in grace",)


def test_upstream_login_per_group(gateway_factory, upstream) -> None:
    gw = gateway_factory(
        connections={
            "demo": upstream.connection(
                roles=[
                    {"groups": ["agents"], "user": "app_md5", "password_file": str(upstream.password_file)},
                    {
                        "groups": ["readonly"],
                        "user": "app_plain",
                        "password_file": str(upstream.password_file),
                    },
                ],
            )
        }
    )
    for groups, role in ((("agents",), "app_md5"), (("readonly", "x"), "app_plain"), (("dba",), "app")):
        token = gw.tokens.issue("ci-bot", list(groups), 60)
        with psycopg.connect(gw.dsn(password=token)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    assert upstream.app_password not in gw.logs()


def test_revocation_and_policy_reload_without_restart(gateway_factory, tmp_path: Path) -> None:
    policies = tmp_path / "rego"
    shutil.copytree(SHIPPED_POLICY, policies)
    data_file = policies / "pgwarden" / "data.json"
    gw = gateway_factory(policy={"paths": [str(policies)]})
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
        data = json.loads(data_file.read_text())
        data["config"]["access"]["revoked"]["subjects"] = ["ci-bot"]
        data_file.write_text(json.dumps(data))
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "policy_reloaded" not in gw.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute("SELECT count(*) FROM products")
        assert "revoked" in str(info.value)
        # A broken policy never replaces a working one.
        (policies / "pgwarden" / "broken.rego").write_text("package pgwarden\nthis is not rego\n")
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "policy_reload_failed" not in gw.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "policy_reload_failed" in gw.logs()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM products")
    versions = {r["labels"]["policy_version"] for r in gw.decisions()}
    assert len(versions) == 2
