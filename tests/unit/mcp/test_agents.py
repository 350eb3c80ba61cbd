"""An agent's standing with the gateway: held statements return at once and hand over once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from enforcer.identity import Identity
from enforcer.mcp.agents import AgentRegistry, AgentSession, GatewayTarget, Held, UnknownApproval
from enforcer.mcp.gateway_client import GatewayRefusal, StatementResult
from enforcer.wire import (
    CommandComplete,
    DataRow,
    ErrorResponse,
    FieldDescription,
    ReadyForQuery,
    RowDescription,
)
from tests.unit.mcp.fake_gateway import FakeGateway

BOT = Identity("ci-bot", "pgwarden", ("agents",), "gateway-token", time.time() + 600)
READY = ReadyForQuery("I")


class Script:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(
        self, sql: str, params: Sequence[str | None] | None, notice: Callable[[str], None]
    ) -> list[Any]:
        if sql.startswith("UPDATE"):
            notice("held for approval apr_0123456789ab; approve with `pgwarden approvals approve apr_0123…`")
            done = asyncio.ensure_future(self.release.wait())
            cancel = asyncio.ensure_future(self.cancelled.wait())
            await asyncio.wait({done, cancel}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            cancel.cancel()
            if self.cancelled.is_set():
                return [ErrorResponse.build("57014", "canceling statement due to user request"), READY]
            return [CommandComplete("UPDATE 1"), READY]
        if "pg_type" in sql:
            return [
                RowDescription((FieldDescription("oid", type_oid=20), FieldDescription("name", type_oid=25))),
                DataRow((b"90001", b"mood")),
                CommandComplete("SELECT 1"),
                READY,
            ]
        return [
            RowDescription((FieldDescription("one", type_oid=23),)),
            DataRow((b"1",)),
            CommandComplete("SELECT 1"),
            READY,
        ]


def agent(sock: Path, token: str = "good-token") -> AgentSession:
    return AgentSession(GatewayTarget(sock, "demo"), BOT, token)


async def test_a_held_statement_returns_at_once_and_its_result_once(sock: Path) -> None:
    script = Script()
    async with FakeGateway(sock, script) as gw:
        a = agent(sock)
        held = await a.run("UPDATE t SET v = 1 WHERE id = $1", ["1"], max_rows=10)
        assert isinstance(held, Held) and held.approval_id == "apr_0123456789ab"
        assert isinstance(a.outcome(held.approval_id), Held)
        # Meanwhile the agent goes on, on a new gateway session.
        other = await a.run("SELECT 1", None, max_rows=10)
        assert isinstance(other, StatementResult) and other.rows == (("1",),)
        assert len(gw.startups) == 2
        script.release.set()
        await a.wait(held.approval_id, 5)
        result = a.outcome(held.approval_id)
        assert isinstance(result, StatementResult) and result.command_tag == "UPDATE 1"
        with pytest.raises(UnknownApproval):
            a.outcome(held.approval_id)
        await a.close()


async def test_closing_withdraws_what_is_still_held(sock: Path) -> None:
    script = Script()

    async with FakeGateway(sock, script) as gw:
        a = agent(sock)

        async def on_cancel() -> None:
            await gw.cancelled.wait()
            script.cancelled.set()

        watcher = asyncio.ensure_future(on_cancel())
        held = await a.run("UPDATE t SET v = 2", None, max_rows=10)
        assert isinstance(held, Held)
        await a.close()
        await watcher
    assert [(c.process_id, c.secret_key) for c in gw.cancels] == [(7, b"secretkey")]


async def test_a_refusal_of_a_held_statement_is_raised_once(sock: Path) -> None:
    script = Script()
    async with FakeGateway(sock, script):
        a = agent(sock)
        held = await a.run("UPDATE t SET v = 3", None, max_rows=10)
        assert isinstance(held, Held)
        script.cancelled.set()
        await a.wait(held.approval_id, 5)
        with pytest.raises(GatewayRefusal, match="canceling"):
            a.outcome(held.approval_id)
        with pytest.raises(UnknownApproval):
            a.outcome(held.approval_id)
        await a.close()


async def test_an_ended_idle_session_is_replaced_and_a_new_token_gets_a_new_session(sock: Path) -> None:
    async with FakeGateway(sock, Script()) as gw:
        a = agent(sock)
        assert isinstance(await a.run("SELECT 1", None, max_rows=1), StatementResult)
        gw.writers[0].write(ErrorResponse.build("28000", "token expired", severity="FATAL").encode())
        gw.writers[0].close()
        await asyncio.sleep(0.05)
        assert isinstance(await a.run("SELECT 1", None, max_rows=1), StatementResult)
        assert len(gw.startups) == 2 and len(gw.statements) == 2  # the ended session took nothing
        gw.token = "fresh-token"
        a.use(BOT, "fresh-token")
        assert isinstance(await a.run("SELECT 1", None, max_rows=1), StatementResult)
        assert len(gw.startups) == 3
        await a.close()


async def test_type_names(sock: Path) -> None:
    async with FakeGateway(sock, Script()) as gw:
        a = agent(sock)
        names = await a.type_names([23, 25, 1007, 1700])
        assert names == {23: "integer", 25: "text", 1007: "integer[]", 1700: "numeric"}
        assert gw.statements == []  # built-in types need no lookup
        assert (await a.type_names([90001, 23]))[90001] == "mood"
        assert (await a.type_names([90001]))[90001] == "mood"
        assert len(gw.statements) == 1  # looked up once, through the gateway
        await a.close()


async def test_the_registry_keys_agents_by_issuer_and_subject(sock: Path) -> None:
    registry = AgentRegistry(GatewayTarget(sock, "demo"), idle_timeout=0)
    a = registry.session_for(BOT, "t1")
    assert registry.session_for(BOT, "t2") is a and a.token == "t2"
    other = Identity("ci-bot", "https://idp.example", ("agents",), "oidc", time.time() + 600)
    assert registry.session_for(other, "t3") is not a
    await registry.sweep()  # idle for longer than 0s, nothing held: closed and forgotten
    assert registry.session_for(BOT, "t4") is not a
    await registry.close()
