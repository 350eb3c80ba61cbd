"""The tools' results and errors, against a scripted gateway and the shipped policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from enforcer.config import SHIPPED_POLICIES, PolicyConfig
from enforcer.identity import Identity
from enforcer.identity.model import AuthenticationFailed
from enforcer.mcp.agents import GatewayTarget
from enforcer.mcp.auth import TokenCheck
from enforcer.mcp.explain import PolicyExplainer
from enforcer.mcp.tools import EndpointSettings, McpEndpoint
from enforcer.wire import (
    CommandComplete,
    DataRow,
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    ReadyForQuery,
    RowDescription,
)
from tests.unit.mcp.fake_gateway import FakeGateway

GOOD = jwt.encode({"sub": "ci-bot", "n": 1}, "k" * 32, algorithm="HS256")
STALE = jwt.encode({"sub": "ci-bot", "n": 2}, "k" * 32, algorithm="HS256")
BOT = Identity("ci-bot", "pgwarden", ("agents",), "gateway-token", time.time() + 600)
READY = ReadyForQuery("I")
RELEASE = asyncio.Event()
#: What the token source hands the endpoint (a test may swap it).
TOKEN = {"value": GOOD}


class Accept:
    async def authenticate(self, user: str, token: str) -> Identity:
        if token != GOOD:
            raise AuthenticationFailed("token is expired")
        return BOT


async def script(sql: str, params: Sequence[str | None] | None, notice: Callable[[str], None]) -> list[Any]:
    if sql.startswith("UPDATE"):
        notice("held for approval apr_00000000abcd; approve with `pgwarden approvals approve …`")
        await RELEASE.wait()
        return [CommandComplete("UPDATE 1"), READY]
    if sql.startswith("DELETE"):
        return [
            ErrorResponse.build("42501", "pgwarden denied this statement: no", detail="decision id d9"),
            READY,
        ]
    fields = (FieldDescription("n", type_oid=23), FieldDescription("j", type_oid=3802))
    return [
        NoticeResponse.build("00000", "a notice", severity="NOTICE"),
        CommandComplete("SET"),
        RowDescription(fields),
        *(DataRow((str(i).encode(), b'{"k": true}')) for i in range(4)),
        CommandComplete("SELECT 4"),
        READY,
    ]


@pytest.fixture
async def endpoint(sock: Path) -> AsyncIterator[McpEndpoint]:
    RELEASE.clear()
    TOKEN["value"] = GOOD
    ep = McpEndpoint(
        EndpointSettings(GatewayTarget(sock, "demo"), "demo", max_rows=3),
        TokenCheck(Accept()),
        lambda: TOKEN["value"],
        PolicyExplainer(PolicyConfig(paths=(SHIPPED_POLICIES,))),
    )
    async with FakeGateway(sock, script, token=GOOD):
        yield ep
        RELEASE.set()
        await ep.agents.close()


async def test_query_result(endpoint: McpEndpoint) -> None:
    doc = await endpoint.query("SET x = 1; SELECT n, j FROM t", max_rows=2)
    assert doc["columns"] == [{"name": "n", "type": "integer"}, {"name": "j", "type": "jsonb"}]
    assert doc["rows"] == [[0, {"k": True}], [1, {"k": True}]]
    assert (doc["row_count"], doc["returned_rows"], doc["truncated"], doc["statements"]) == (4, 2, True, 2)
    assert doc["note"].startswith("only the first 2 of 4 rows") and "the last one" in doc["note"]
    assert doc["notices"] == ["a notice"]
    assert (await endpoint.query("SELECT 1", max_rows=99))["returned_rows"] == 3  # the server's cap wins


async def test_held_then_done_once(endpoint: McpEndpoint) -> None:
    pending = await endpoint.query("UPDATE t SET v = $1", params=[True])
    assert pending["state"] == "pending" and pending["approval_id"] == "apr_00000000abcd"
    assert (await endpoint.approval_status("apr_00000000abcd"))["state"] == "pending"
    RELEASE.set()
    done = await endpoint.approval_status("apr_00000000abcd", wait_seconds=5)
    assert done["state"] == "done" and done["command"] == "UPDATE 1"
    with pytest.raises(ToolError, match="already returned"):
        await endpoint.approval_status("apr_00000000abcd")


async def test_errors(endpoint: McpEndpoint) -> None:
    with pytest.raises(ToolError, match="decision id d9") as denied:
        await endpoint.query("DELETE FROM t")
    assert "What you can do" in str(denied.value)
    TOKEN["value"] = STALE
    with pytest.raises(ToolError, match="pgwarden refused the token: token is expired"):
        await endpoint.query("SELECT 1")


async def test_explain_uses_the_policy_with_the_agents_identity(endpoint: McpEndpoint) -> None:
    doc = await endpoint.explain("DELETE FROM orders")
    assert doc["decision"]["action"] == "deny" and doc["identity"]["groups"] == ["agents"]
    review = await endpoint.explain("UPDATE products SET price = 1 WHERE id = 1")
    assert review["decision"]["review"]["approvers"] == ["dba"]
    assert review["decision"]["what_happens"].endswith("approvers: a member of dba")
