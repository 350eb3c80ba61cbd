"""Policies and data reload when their files change (no signal), and a broken edit keeps the old version."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import SHIPPED_POLICY

pytestmark = pytest.mark.integration


def wait_for_log(gw: Any, needle: str, count: int = 1) -> None:
    deadline = time.monotonic() + 15
    while gw.logs().count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.logs().count(needle) >= count, needle


def test_file_watch_reloads_and_rejects_broken_policies(gateway_factory: Any, tmp_path: Path) -> None:
    policies = tmp_path / "rego"
    shutil.copytree(SHIPPED_POLICY, policies)
    data_file = policies / "pgwarden" / "data.json"
    gw = gateway_factory(policy={"paths": [str(policies)], "watch_interval": "100ms"})
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
        data = json.loads(data_file.read_text())
        data["config"]["access"]["revoked"]["subjects"] = ["ci-bot"]
        data_file.write_text(json.dumps(data))
        wait_for_log(gw, "policy_reloaded")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute("SELECT count(*) FROM products")
        assert "revoked" in str(info.value)

        (policies / "pgwarden" / "broken.rego").write_text("package pgwarden\nthis is not rego\n")
        wait_for_log(gw, "policy_reload_failed")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the working version still decides
            conn.execute("SELECT count(*) FROM products")

        (policies / "pgwarden" / "broken.rego").unlink()
        data["config"]["access"]["revoked"]["subjects"] = []
        data_file.write_text(json.dumps(data))
        wait_for_log(gw, "policy_reloaded", count=2)
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
    # Every decision record names the policy version that took it. The version is a hash of the
    # policy and data, so restoring the original data restores the original version.
    versions = [r["labels"]["policy_version"] for r in gw.decisions()]
    assert len(set(versions)) == 2
    assert versions[0] == versions[-1] != versions[1]
