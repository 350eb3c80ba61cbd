"""`pgwarden approvals ...` against the real API server (uvicorn on a free port) and a real store.

Errors name the problem and the fix; refusals from the server are passed through (exit 1);
usage problems exit 2; the token is never printed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from enforcer.api.app import close_app, create_app
from enforcer.api.server import ApiServer, serve_api
from enforcer.approvals.service import ApprovalService
from enforcer.approvals.store import ApprovalStore
from enforcer.cli import app as cli
from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from enforcer.localpg import free_port
from tests.unit.api.conftest import Auth
from tests.unit.api.held import held

runner = CliRunner()


@pytest.fixture
def api_url(auth: Auth, approvals: ApprovalService) -> Iterator[str]:
    """The API served by the embedded uvicorn server in its own thread and event loop."""
    app = create_app(
        store_url=None, authenticator=auth.authenticator, auditor_groups=("auditors",), approvals=approvals
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(serve_api(app, "127.0.0.1", 0))
        except BaseException as exc:  # reported by the fixture below
            box["error"] = exc
            started.set()
            return
        box["server"] = server
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="api-under-test", daemon=True)
    thread.start()
    assert started.wait(10), "the API server did not start"
    if "error" in box:
        raise box["error"]
    server: ApiServer = box["server"]
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        close_app(app)


def pgwarden(*args: str, token: str | None = None) -> Any:
    return runner.invoke(cli, ["approvals", *args], env={"PGWARDEN_TOKEN": token, "PGWARDEN_CONFIG": None})


def test_list_as_a_table_and_as_json(api_url: str, auth: Auth, approval_store: ApprovalStore) -> None:
    older = held(approval_store, age=125, sql="DELETE FROM orders WHERE id = 1", params=None)
    newer = held(approval_store, approvers=["dba", "leads"], age=3)
    held(approval_store, approvers=["security"])  # not dora's to see
    token = auth.token("dora", ("dba",))
    res = pgwarden("list", "--url", api_url, token=token)
    assert res.exit_code == 0, res.output
    assert res.output.index(newer.id) < res.output.index(older.id)
    assert "DELETE FROM orders WHERE id = 1" in res.output and "2m" in res.output and "pending" in res.output
    assert "writes to customers need a DBA's approval" in res.output
    assert token not in res.output

    res = pgwarden("list", "--url", api_url, "--format", "json", token=token)
    assert res.exit_code == 0
    assert json.loads(res.output) == [newer.to_document(), older.to_document()]
    res = pgwarden("list", "--url", api_url, "--state", "rejected", token=token)
    assert res.exit_code == 0 and "no approval requests that you may see" in res.output


def test_url_comes_from_the_config(
    api_url: str, auth: Auth, approval_store: ApprovalStore, tmp_path: Path
) -> None:
    req = held(approval_store)
    (tmp_path / "pw").write_text("secret")
    raw: dict[str, Any] = {
        "listener": {"host": "127.0.0.1", "port": 0, "insecure_loopback_dev": True},
        "gateway_tokens": {"signing_key_file": "token.key"},
        "connections": {"demo": {"database": "demo", "user": "app", "password_file": "pw"}},
        "approvals": {"store": "approvals.db", "public_url": api_url},
    }
    config = tmp_path / "pgwarden.yaml"
    config.write_text(yaml.safe_dump(raw))
    token = auth.token("dora", ("dba",))
    res = pgwarden("show", req.id, "-c", str(config), "--format", "json", token=token)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["id"] == req.id
    # Without approvals.public_url: http://<api.listen>.
    raw["approvals"] = {"store": "approvals.db"}
    raw["api"] = {"listen": api_url.removeprefix("http://")}
    config.write_text(yaml.safe_dump(raw))
    res = pgwarden("show", req.id, "-c", str(config), "--format", "json", token=token)
    assert res.exit_code == 0, res.output
    del raw["api"]
    config.write_text(yaml.safe_dump(raw))
    res = pgwarden("show", req.id, "-c", str(config), token=token)
    assert res.exit_code == 2 and "has no api section" in res.output and "--url" in res.output


def test_show(api_url: str, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    res = pgwarden("show", req.id, "--url", api_url, token=auth.token("dora", ("dba",)))
    assert res.exit_code == 0, res.output
    for text in (
        req.id,
        "pending",
        "ci-bot (pgwarden); groups: agents",
        "approvers  dba",
        '["x@example.com", "7"]',
        "writes to customers need a DBA's approval",
        "UPDATE customers SET email = $1 WHERE id = $2",
    ):
        assert text in res.output, text
    res = pgwarden("show", "apr_000000000000", "--url", api_url, token=auth.token("dora", ("dba",)))
    assert res.exit_code == 1 and "no approval request apr_000000000000" in res.output


def test_approve_and_reject(api_url: str, auth: Auth, approval_store: ApprovalStore) -> None:
    first, second = held(approval_store), held(approval_store)
    token = auth.token("dora", ("dba",))
    res = pgwarden("approve", first.id, "--url", api_url, token=token)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"{first.id} approved by dora"
    assert approval_store.get(first.id).state == "approved"  # type: ignore[union-attr]

    res = pgwarden("reject", second.id, "--url", api_url, token=token)
    assert res.exit_code == 2 and "reject needs --reason" in res.output
    res = pgwarden("reject", second.id, "--url", api_url, "--reason", "use the batch job", token=token)
    assert res.exit_code == 0 and res.output.strip() == f"{second.id} rejected by dora: use the batch job"
    assert approval_store.get(second.id).decision_reason == "use the batch job"  # type: ignore[union-attr]


def test_refusals_are_passed_through(api_url: str, auth: Auth, approval_store: ApprovalStore) -> None:
    own = held(approval_store, subject="dora")
    other = held(approval_store)
    dora = auth.token("dora", ("dba",))
    res = pgwarden("approve", own.id, "--url", api_url, token=dora)
    assert res.exit_code == 1
    assert f"pgwarden: error: dora requested {own.id} and cannot approve their own request" in res.output
    res = pgwarden("approve", other.id, "--url", api_url, token=auth.token("sam", ("security",)))
    assert res.exit_code == 1 and f"sam is not in a group that may decide {other.id}: dba" in res.output
    assert pgwarden("approve", other.id, "--url", api_url, token=dora).exit_code == 0
    res = pgwarden("reject", other.id, "--url", api_url, "--reason", "late", token=dora)
    assert res.exit_code == 1 and f"approval {other.id} is approved, not pending" in res.output
    res = pgwarden("approve", other.id, "--url", api_url, "--reason", "x" * 1001, token=dora)
    assert res.exit_code == 2 and "reason: at most 1000 characters" in res.output


def test_token_problems_are_usage_errors_and_never_printed(api_url: str, auth: Auth, tmp_path: Path) -> None:
    res = pgwarden("list", "--url", api_url)
    assert res.exit_code == 2 and "set PGWARDEN_TOKEN or pass --token" in res.output
    forged = GatewayTokens(GatewayTokenConfig(signing_key_file=_other_key(tmp_path))).issue(
        "dora", ["dba"], 60
    )
    res = pgwarden("list", "--url", api_url, token=forged)
    assert res.exit_code == 2 and "pass a valid token with --token or PGWARDEN_TOKEN" in res.output
    assert forged not in res.output
    res = pgwarden("list", "--url", api_url, "--token", "hunter2-not-a-token")
    assert res.exit_code == 2 and "not a token" in res.output and "hunter2" not in res.output


def test_usage_and_unreachable_gateway(auth: Auth) -> None:
    token = auth.token("dora", ("dba",))
    res = pgwarden("list", token=token)
    assert res.exit_code == 2 and "--url URL or the gateway's --config FILE" in res.output
    res = pgwarden("list", "--url", "127.0.0.1:8080", token=token)
    assert res.exit_code == 2 and "expected an http:// or https:// URL" in res.output
    res = pgwarden("list", "--url", f"http://127.0.0.1:{free_port()}", token=token)
    assert res.exit_code == 1 and "cannot reach the gateway's API" in res.output and "--url" in res.output


def test_request_text_cannot_style_or_control_the_terminal(
    api_url: str, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(
        approval_store,
        subject="[bold red]mallory[/]",
        sql="UPDATE t SET x = '\x1b[2J\x1b]0;owned\x07' -- [link=https://evil.example]x[/link]",
        reasons=["[blink]urgent[/blink]\rfake line"],
    )
    token = auth.token("dora", ("dba",))
    for args in (("list",), ("show", req.id)):
        res = pgwarden(*args, "--url", api_url, token=token)
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.output and "\x07" not in res.output and "\r" not in res.output
        assert "[bold red]mallory[/]" in res.output and "\\x1b[2J" in res.output
        assert "[blink]urgent[/blink]" in res.output


def _other_key(tmp_path: Path) -> Path:
    generate_key(tmp_path / "other.key")
    return tmp_path / "other.key"


def test_the_helper_integration_tests_decide_with(
    api_url: str, auth: Auth, approval_store: ApprovalStore
) -> None:
    from tests import approvals_client

    first = held(approval_store, sql="UPDATE a SET x = 1", age=20)
    second = held(approval_store, sql="UPDATE b SET x = 1", age=10)
    dora = auth.token("dora", ("dba",))
    assert [r["id"] for r in approvals_client.list_pending(api_url, dora)] == [second.id, first.id]
    assert approvals_client.wait_for_pending(api_url, dora, sql="UPDATE a SET x = 1")["id"] == first.id
    assert approvals_client.approve(api_url, dora, first.id)["state"] == "approved"
    assert approvals_client.reject(api_url, dora, second.id, reason="no")["decision_reason"] == "no"
    assert approvals_client.get(api_url, dora, first.id)["decided_by"] == "dora"
    with pytest.raises(approvals_client.ApprovalCallFailed) as refused:
        approvals_client.approve(api_url, dora, first.id)
    assert (
        refused.value.status == 409 and refused.value.error == f"approval {first.id} is approved, not pending"
    )
    with pytest.raises(AssertionError, match="no pending approval request"):
        approvals_client.wait_for_pending(api_url, dora, timeout=0)
