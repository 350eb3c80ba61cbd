"""`pgwarden mcp` through the SDK's own MCP client, over stdio and streamable HTTP.

The MCP server is a client of the gateway's local socket, so every tool call that touches data is
decided, enforced and recorded by the real gateway (shipped policy) in front of a real Postgres.
Approvals are decided through a second ApprovalService on the same store, as another gateway
instance would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult, TextContent

from enforcer.approvals.service import ApprovalService, ApprovalSettings
from enforcer.approvals.store import ApprovalStore
from enforcer.audit.sessions import SessionStore
from enforcer.identity import Identity
from enforcer.identity.gateway_tokens import load_private_key
from enforcer.localpg import free_port
from tests.conftest import REPO, SHIPPED_POLICY, GatewayProcess, wait_port

pytestmark = pytest.mark.integration

#: The gateway below has a masking section, so `mask` decisions return masked rows.
MASKING_ENFORCED = True

TRANSPORTS = ["stdio", "http"]
APPROVER = Identity("alice-dba", "pgwarden", ("dba",), "gateway-token", time.time() + 3600)


def probe(upstream: Any, sql: str) -> str:
    return str(upstream.pg.psql(sql, database="demo", user="app", password=upstream.app_password).strip())


@pytest.fixture(scope="module")
def store_path(workdir: Path) -> Path:
    return workdir / "mcp-approvals.sqlite"


@pytest.fixture(scope="module")
def gw(gateway_factory: Any, workdir: Path, store_path: Path, upstream: Any) -> GatewayProcess:
    probe(upstream, "CREATE TABLE IF NOT EXISTS mcp_probe (id int PRIMARY KEY, v int NOT NULL)")
    key = workdir / "mcp-mask.key"
    key.write_text("an-mcp-test-masking-key-32-bytes")
    gateway: GatewayProcess = gateway_factory(
        listener={"mcp_socket": str(workdir / "mcp.sock")},
        policy={"paths": [str(SHIPPED_POLICY)]},
        approvals={"store": str(store_path), "poll_interval": "50ms"},
        masking={"hash_key_file": str(key)},
    )
    return gateway


@pytest.fixture(scope="module")
def http_url(gw: GatewayProcess, workdir: Path) -> Iterator[str]:
    """`pgwarden mcp --transport http` in front of the gateway, for the whole module."""
    log = workdir / "mcp-http.log"
    proc, url = start_http_mcp(gw, log)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")


@pytest.fixture
def other_instance(store_path: Path) -> Iterator[ApprovalService]:
    service = ApprovalService(ApprovalStore(str(store_path)), ApprovalSettings(instance="other"))
    yield service
    service.store.close()


@pytest.fixture
def row(upstream: Any) -> int:
    rid = time.time_ns() % 1_000_000_000
    probe(upstream, f"INSERT INTO mcp_probe VALUES ({rid}, 0)")
    return rid


@contextlib.asynccontextmanager
async def connect(
    transport: str, gw: GatewayProcess, token: str, http_url: str = ""
) -> AsyncIterator[Client]:
    """An SDK client on `pgwarden mcp`: a stdio child with the token in its environment, or HTTP."""
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "enforcer.cli", "mcp", "--config", str(gw.config_path), "--max-rows", "3"],
            env={"PGWARDEN_TOKEN": token, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        with open(gw.log_path.with_name("mcp-stdio.log"), "a") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client
    else:
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(http_url, http_client=http)) as client,
        ):
            yield client


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url_for(transport: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("http_url")) if transport == "http" else ""


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def error(result: CallToolResult) -> str:
    assert result.is_error, result
    return text(result)


# ---------------------------------------------------------------------- reads


async def test_allowed_query_returns_rows_columns_types_and_truncation(
    gw: GatewayProcess, transport: str, url_for: str
) -> None:
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {
            "query",
            "explain",
            "approval_status",
            "list_schemas",
            "list_tables",
            "describe_table",
        }

        got = data(
            await client.call_tool(
                "query",
                {
                    "sql": "SELECT id, sku, price, price > $1 AS pricey FROM products ORDER BY id",
                    "params": [100],
                },
            )
        )
        assert got["state"] == "done" and got["command"] == "SELECT 4"
        assert got["columns"] == [
            {"name": "id", "type": "integer"},
            {"name": "sku", "type": "text"},
            {"name": "price", "type": "numeric"},
            {"name": "pricey", "type": "boolean"},
        ]
        # --max-rows 3: the fourth row is counted, not returned.
        assert got["rows"] == [
            [1, "KB-01", "129.00", True],
            [2, "MS-02", "59.50", False],
            [3, "MN-03", "319.99", True],
        ]
        assert got["row_count"] == 4 and got["returned_rows"] == 3 and got["truncated"] is True

        small = data(
            await client.call_tool(
                "query",
                {"sql": "SELECT name FROM products WHERE sku = $1", "params": ["CB-04"], "max_rows": 1},
            )
        )
        assert small["rows"] == [["USB-C cable"]] and small["truncated"] is False

        null = data(await client.call_tool("query", {"sql": "SELECT $1::int AS nothing", "params": [None]}))
        assert null["rows"] == [[None]]


async def test_catalog_tools(gw: GatewayProcess, transport: str, url_for: str) -> None:
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        schemas = data(await client.call_tool("list_schemas", {}))["schemas"]
        assert "public" in [s["name"] for s in schemas]
        tables = data(await client.call_tool("list_tables", {"schema": "public"}))["tables"]
        names = {t["name"]: t["kind"] for t in tables}
        assert names["customers"] == "table" and names["orders"] == "table"

        products = data(await client.call_tool("describe_table", {"table": "products"}))
        assert (products["schema"], products["name"], products["kind"]) == ("public", "products", "table")
        cols = {c["name"]: c for c in products["columns"]}
        assert cols["price"]["type"] == "numeric(10,2)" and cols["price"]["nullable"] is False
        assert cols["id"]["default"].startswith("nextval(")
        assert not any(c["masked"] for c in products["columns"])
        assert products["read_decision"]["action"] == "allow"

        missing = error(await client.call_tool("describe_table", {"table": "no_such_table"}))
        assert "no_such_table" in missing and "list_tables" in missing


# ---------------------------------------------------------------------- refusals


async def test_denial_says_why_and_what_to_do(gw: GatewayProcess, transport: str, url_for: str) -> None:
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        msg = error(await client.call_tool("query", {"sql": "DELETE FROM orders"}))
    assert "pgwarden denied this statement" in msg
    assert "DELETE without WHERE on public.orders is destructive" in msg
    assert "decision id " in msg and "SQLSTATE 42501" in msg
    assert "do not retry the same statement" in msg and "`explain`" in msg
    denied = [r for r in gw.decisions() if r["input"]["statement"]["text"] == "DELETE FROM orders"]
    assert denied and denied[-1]["result"]["action"] == "deny"
    assert denied[-1]["input"]["session"]["protocol"] == "mcp"


async def test_masked_columns(gw: GatewayProcess, transport: str, url_for: str) -> None:
    sql = "SELECT id, full_name, ssn FROM customers ORDER BY id LIMIT 2"
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        described = data(await client.call_tool("describe_table", {"table": "public.customers"}))
        masked = {c["name"]: c["mask"]["strategy"] for c in described["columns"] if c["masked"]}
        assert masked == {
            "full_name": "partial",
            "email": "email",
            "phone": "partial",
            "ssn": "redact",
            "birth_date": "null",
        }
        assert described["read_decision"]["action"] == "mask"
        result = await client.call_tool("query", {"sql": sql})
    if MASKING_ENFORCED:
        rows = data(result)["rows"]
        assert [r[0] for r in rows] == [1, 2]
        assert all(r[2] != "123-45-6789" and r[2] != "987-65-4321" for r in rows)
    else:
        msg = error(result)
        assert "masked columns" in msg and "result masking is not enabled" in msg
        assert "describe_table" in msg
    record = [r for r in gw.decisions() if r["input"]["statement"]["text"] == sql][-1]
    assert record["result"]["action"] == "mask" and record["input"]["session"]["protocol"] == "mcp"


async def test_explain_decides_without_running(
    gw: GatewayProcess, transport: str, url_for: str, row: int
) -> None:
    update = f"UPDATE mcp_probe SET v = 100 WHERE id = {row}"
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        deny = data(await client.call_tool("explain", {"sql": "DELETE FROM orders"}))
        review = data(await client.call_tool("explain", {"sql": update}))
        read = data(await client.call_tool("explain", {"sql": "SELECT 1; SELECT name FROM products"}))
    assert deny["decision"]["action"] == "deny"
    assert any("DELETE without WHERE" in r for r in deny["decision"]["reasons"])
    assert "refuse" in deny["decision"]["what_happens"]
    assert review["decision"]["action"] == "review" and review["decision"]["review"]["approvers"] == ["dba"]
    assert "pending" in review["decision"]["what_happens"]
    assert review["identity"] == {"subject": "ci-bot", "groups": ["agents"]}
    assert [s["action"] for s in read["statements"]] == ["allow", "allow"]
    # Nothing ran, and nothing was decided by the gateway: an explanation is a preview.
    assert not [r for r in gw.decisions() if r["input"]["statement"]["text"] == update]


# ---------------------------------------------------------------------- approvals


async def test_review_round_trip_runs_exactly_once(
    gw: GatewayProcess,
    transport: str,
    url_for: str,
    row: int,
    upstream: Any,
    other_instance: ApprovalService,
) -> None:
    sql = "UPDATE mcp_probe SET v = v + 1 WHERE id = $1"
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        pending = data(await client.call_tool("query", {"sql": sql, "params": [row]}))
        assert pending["state"] == "pending" and pending["approval_id"].startswith("apr_")
        approval_id = pending["approval_id"]
        assert "approval_status" in pending["message"] and approval_id in pending["notice"]
        req = other_instance.store.get(approval_id)
        assert req is not None and req.state == "pending" and req.sql == sql and req.params == [str(row)]
        assert req.protocol == "extended" and req.subject == "ci-bot"

        still = data(await client.call_tool("approval_status", {"approval_id": approval_id}))
        assert still["state"] == "pending"
        assert probe(upstream, f"SELECT v FROM mcp_probe WHERE id = {row}") == "0"  # nothing ran yet
        # The agent may do other work meanwhile, on a new gateway session.
        assert data(await client.call_tool("query", {"sql": "SELECT 1 AS one"}))["rows"] == [[1]]

        await other_instance.decide(approval_id, APPROVER, approve=True, reason="fine")
        done = data(
            await client.call_tool("approval_status", {"approval_id": approval_id, "wait_seconds": 20})
        )
        assert (
            done["state"] == "done" and done["command"] == "UPDATE 1" and done["approval_id"] == approval_id
        )
        # Handed over once: the id is forgotten, and the store says what happened.
        again = error(await client.call_tool("approval_status", {"approval_id": approval_id}))
        assert "already returned" in again and "'executed'" in again and "alice-dba" in again
    assert probe(upstream, f"SELECT v FROM mcp_probe WHERE id = {row}") == "1"
    final = other_instance.store.get(approval_id)
    assert final is not None and final.state == "executed"


async def test_rejection_comes_back_with_the_reason(
    gw: GatewayProcess, transport: str, url_for: str, row: int, upstream: Any, other_instance: ApprovalService
) -> None:
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        pending = data(await client.call_tool("query", {"sql": f"DELETE FROM mcp_probe WHERE id = {row}"}))
        await other_instance.decide(pending["approval_id"], APPROVER, approve=False, reason="not today")
        msg = error(
            await client.call_tool(
                "approval_status", {"approval_id": pending["approval_id"], "wait_seconds": 20}
            )
        )
    assert "alice-dba rejected this statement" in msg and "not today" in msg
    assert "Do not send it again unchanged" in msg
    assert probe(upstream, f"SELECT count(*) FROM mcp_probe WHERE id = {row}") == "1"


async def test_held_statements_belong_to_their_identity(
    gw: GatewayProcess, http_url: str, row: int, other_instance: ApprovalService
) -> None:
    async with connect("http", gw, gw.token("ci-bot"), http_url) as client:
        pending = data(
            await client.call_tool("query", {"sql": f"UPDATE mcp_probe SET v = 5 WHERE id = {row}"})
        )
        async with connect("http", gw, gw.token("other-bot"), http_url) as intruder:
            msg = error(await intruder.call_tool("approval_status", {"approval_id": pending["approval_id"]}))
        assert "holds no statement" in msg and "state at the gateway" not in msg
        await other_instance.decide(pending["approval_id"], APPROVER, approve=False, reason="cleanup")


async def test_disconnecting_withdraws_a_held_statement(
    gw: GatewayProcess, row: int, upstream: Any, other_instance: ApprovalService
) -> None:
    async with connect("stdio", gw, gw.token("ci-bot")) as client:
        pending = data(
            await client.call_tool("query", {"sql": f"UPDATE mcp_probe SET v = 7 WHERE id = {row}"})
        )
    approval_id = pending["approval_id"]
    deadline = time.monotonic() + 15
    while (req := other_instance.store.get(approval_id)) is not None and req.state == "pending":
        assert time.monotonic() < deadline, "the held statement was not withdrawn"
        await asyncio.sleep(0.05)
    assert req is not None and req.state == "withdrawn"
    assert probe(upstream, f"SELECT v FROM mcp_probe WHERE id = {row}") == "0"


def start_http_mcp(gw: GatewayProcess, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enforcer.cli",
                "mcp",
                "--config",
                str(gw.config_path),
                "--transport",
                "http",
                "--listen",
                f"127.0.0.1:{port}",
                "--max-rows",
                "3",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    wait_port(port, proc, log)
    return proc, f"http://127.0.0.1:{port}/mcp"


async def test_stopping_the_http_server_withdraws_held_statements(
    gw: GatewayProcess, workdir: Path, row: int, upstream: Any, other_instance: ApprovalService
) -> None:
    proc, url = start_http_mcp(gw, workdir / "mcp-stopped.log")
    try:
        async with connect("http", gw, gw.token("ci-bot"), url) as client:
            pending = data(
                await client.call_tool("query", {"sql": f"UPDATE mcp_probe SET v = 8 WHERE id = {row}"})
            )
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    req = other_instance.store.get(pending["approval_id"])
    assert req is not None and req.state == "withdrawn"
    assert probe(upstream, f"SELECT v FROM mcp_probe WHERE id = {row}") == "0"


async def test_a_killed_mcp_process_leaves_nothing_runnable(
    gw: GatewayProcess, workdir: Path, row: int, other_instance: ApprovalService
) -> None:
    proc, url = start_http_mcp(gw, workdir / "mcp-killed.log")
    try:
        async with connect("http", gw, gw.token("ci-bot"), url) as client:
            pending = data(
                await client.call_tool("query", {"sql": f"UPDATE mcp_probe SET v = 9 WHERE id = {row}"})
            )
    finally:
        proc.kill()  # no chance to send a CancelRequest: the gateway must notice the socket closing
        proc.wait()
    deadline = time.monotonic() + 3
    while (req := other_instance.store.get(pending["approval_id"])) is not None and req.state == "pending":
        if time.monotonic() > deadline:
            await other_instance.decide(pending["approval_id"], APPROVER, approve=False, reason="cleanup")
            raise AssertionError("the held statement of a killed MCP process was not withdrawn")
        await asyncio.sleep(0.05)
    assert req is not None and req.state == "withdrawn"


# ---------------------------------------------------------------------- tokens


def forged_token() -> str:
    now = int(time.time())
    claims = {
        "iss": "pgwarden",
        "aud": "pgwarden",
        "sub": "ci-bot",
        "groups": ["dba"],
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")


def expired_token(workdir: Path) -> str:
    now = int(time.time())
    claims = {
        "iss": "pgwarden",
        "aud": "pgwarden",
        "sub": "ci-bot",
        "groups": ["agents"],
        "iat": now - 900,
        "nbf": now - 900,
        "exp": now - 300,
    }
    return jwt.encode(claims, load_private_key(workdir / "token.key"), algorithm="EdDSA")


async def test_stdio_refuses_forged_and_expired_tokens(gw: GatewayProcess, workdir: Path) -> None:
    for token, why in ((forged_token(), "signature"), (expired_token(workdir), "expired")):
        async with connect("stdio", gw, token) as client:
            msg = error(await client.call_tool("query", {"sql": "SELECT 1"}))
        assert msg.startswith("Error executing tool query: pgwarden refused the token")
        assert why in msg.lower() and "PGWARDEN_TOKEN" in msg


async def test_http_requires_a_valid_bearer_token(gw: GatewayProcess, http_url: str, workdir: Path) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        for auth, why in (
            (None, "Authorization: Bearer"),
            ("Basic abc", "Authorization: Bearer"),
            (f"Bearer {forged_token()}", "signature"),
            (f"Bearer {expired_token(workdir)}", "expired"),
            ("Bearer not-a-token", "not a token"),
        ):
            h = dict(headers, **({"Authorization": auth} if auth else {}))
            resp = await http.post(http_url, content=json.dumps(init), headers=h)
            assert resp.status_code == 401, resp.text
            assert why in resp.json()["error_description"].lower() or why in resp.json()["error_description"]
            assert resp.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        ok = await http.post(
            http_url, content=json.dumps(init), headers=dict(headers, Authorization=f"Bearer {gw.token()}")
        )
        assert ok.status_code == 200, ok.text


# ---------------------------------------------------------------------- audit


async def test_records_and_session_say_mcp(gw: GatewayProcess, transport: str, url_for: str) -> None:
    marker = f"mcp-audit-{transport}-{time.time_ns()}"
    sql = f"SELECT '{marker}' AS marker"
    async with connect(transport, gw, gw.token("ci-bot"), url_for) as client:
        assert data(await client.call_tool("query", {"sql": sql}))["rows"] == [[marker]]
    records = [r for r in gw.decisions() if r["input"]["statement"]["text"] == sql]
    assert len(records) == 1
    doc = records[0]["input"]
    assert doc["session"]["protocol"] == "mcp" and doc["session"]["application_name"] == "pgwarden-mcp"
    assert doc["identity"]["subject"] == "ci-bot" and doc["session"]["connection"] == "demo"
    session_id = records[0]["enforcement"]["session"]

    assert gw.session_store is not None
    deadline = time.monotonic() + 10
    while True:
        store = SessionStore(str(gw.session_store))
        try:
            session = store.get_session(session_id)
            statements = store.statements(session_id) if session else []
        finally:
            store.close()
        if session and any(s["sql"] == sql for s in statements):
            break
        assert time.monotonic() < deadline, "the MCP session was not recorded"
        await asyncio.sleep(0.05)
    assert session["protocol"] == "mcp" and session["subject"] == "ci-bot"
    assert session["application_name"] == "pgwarden-mcp" and session["client_addr"] == "mcp:local"
    statement = next(s for s in statements if s["sql"] == sql)
    # The session is an MCP session; each statement keeps its wire protocol (no params: simple Query).
    assert statement["action"] == "allow" and statement["protocol"] == "simple"
