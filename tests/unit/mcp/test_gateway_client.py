"""The gateway client against a scripted gateway: results, the row cap, refusals, notices, endings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from enforcer.mcp.gateway_client import (
    GatewayConnection,
    GatewayRefusal,
    GatewayUnavailable,
    SessionEnded,
)
from enforcer.wire import (
    CommandComplete,
    CopyData,
    CopyDone,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    ReadyForQuery,
    RowDescription,
)
from tests.unit.mcp.fake_gateway import FakeGateway

INT4, TEXT = 23, 25
READY = ReadyForQuery("I")


def rows(n: int) -> list[Any]:
    return [
        RowDescription((FieldDescription("id", 16384, 1, INT4), FieldDescription("name", 16384, 2, TEXT))),
        *(DataRow((str(i).encode(), None if i % 2 else f"n{i}".encode())) for i in range(1, n + 1)),
        CommandComplete(f"SELECT {n}"),
        READY,
    ]


async def answer(sql: str, params: Sequence[str | None] | None, notice: Callable[[str], None]) -> list[Any]:
    if sql == "five":
        return rows(5)
    if sql == "two statements":
        return [*rows(1)[:-1], CommandComplete("UPDATE 3"), READY]
    if sql == "select then update":
        return [*rows(2)[:-1], CommandComplete("UPDATE 3"), *rows(1)]
    if sql == "denied":
        return [
            ErrorResponse.build("42501", "pgwarden denied this statement: no", detail="decision id d1"),
            READY,
        ]
    if sql == "fatal":
        return [ErrorResponse.build("57P01", "terminating connection", severity="FATAL")]
    if sql == "notice":
        notice("first")
        return [NoticeResponse.build("00000", "second", severity="NOTICE"), CommandComplete("SET"), READY]
    if sql == "copy in":
        return [CopyInResponse(0, (0,))]
    if sql == "copy out":
        return [
            CopyOutResponse(0, (0,)),
            CopyData(b"1\ta\n"),
            CopyData(b"2\tb\n"),
            CopyDone(),
            CommandComplete("COPY 2"),
            READY,
        ]
    return [CommandComplete("SELECT 0"), READY]


async def connect(sock: Path, token: str = "good-token") -> GatewayConnection:
    return await GatewayConnection.open(
        sock, user="ci-bot", token=token, connection="demo", application_name="pgwarden-mcp"
    )


async def test_rows_are_capped_but_counted_and_the_session_stays_in_step(sock: Path) -> None:
    async with FakeGateway(sock, answer) as gw:
        conn = await connect(sock)
        result = await conn.execute("five", max_rows=2)
        assert [c.name for c in result.columns] == ["id", "name"] and result.columns[0].type_oid == INT4
        assert result.rows == (("1", None), ("2", "n2"))
        assert (result.row_count, result.truncated, result.command_tag) == (5, True, "SELECT 5")
        again = await conn.execute("five", max_rows=10)
        assert len(again.rows) == 5 and not again.truncated
        assert conn.parameters["server_version"] == "16.4"
        await conn.close()
    assert gw.startups == [
        {"user": "ci-bot", "database": "demo", "application_name": "pgwarden-mcp", "client_encoding": "UTF8"}
    ]


async def test_parameters_use_the_extended_protocol_as_text(sock: Path) -> None:
    async with FakeGateway(sock, answer) as gw:
        conn = await connect(sock)
        await conn.execute("SELECT $1, $2", ["42", None], max_rows=1)
        await conn.execute("SELECT 1", None, max_rows=1)
        await conn.close()
    assert gw.statements == [("SELECT $1, $2", ["42", None]), ("SELECT 1", None)]


async def test_several_statements_report_the_last(sock: Path) -> None:
    async with FakeGateway(sock, answer):
        conn = await connect(sock)
        last_is_command = await conn.execute("two statements", max_rows=5)
        assert (last_is_command.statements, last_is_command.command_tag) == (2, "UPDATE 3")
        assert last_is_command.columns == () and last_is_command.row_count == 3
        last_is_select = await conn.execute("select then update", max_rows=5)
        assert last_is_select.command_tag == "SELECT 1" and last_is_select.rows == (("1", None),)
        await conn.close()


async def test_an_error_is_a_refusal_and_the_session_goes_on(sock: Path) -> None:
    async with FakeGateway(sock, answer):
        conn = await connect(sock)
        with pytest.raises(GatewayRefusal) as info:
            await conn.execute("denied", max_rows=5)
        assert (info.value.sqlstate, info.value.detail, info.value.fatal) == (
            "42501",
            "decision id d1",
            False,
        )
        assert (await conn.execute("five", max_rows=5)).row_count == 5
        with pytest.raises(GatewayRefusal) as fatal:
            await conn.execute("fatal", max_rows=5)
        assert fatal.value.fatal and conn.closed
        await conn.close()


async def test_notices_reach_the_handler_as_they_arrive(sock: Path) -> None:
    seen: list[str] = []
    async with FakeGateway(sock, answer):
        conn = await connect(sock)
        result = await conn.execute("notice", max_rows=5, on_notice=lambda n: seen.append(n.message))
        await conn.close()
    assert seen == ["first", "second"] and result.notices == ("first", "second")


async def test_copy(sock: Path) -> None:
    async with FakeGateway(sock, answer) as gw:
        conn = await connect(sock)
        with pytest.raises(GatewayRefusal, match="use INSERT statements"):
            await conn.execute("copy in", max_rows=5)
        out = await conn.execute("copy out", max_rows=5)
        assert out.rows == (("1\ta",), ("2\tb",)) and out.row_count == 2
        await conn.close()
    assert gw.copy_failures and "COPY data" in gw.copy_failures[0]


async def test_a_refused_login_and_a_missing_socket(sock: Path) -> None:
    with pytest.raises(GatewayUnavailable, match=r"listener\.mcp_socket"):
        await connect(sock)
    async with FakeGateway(sock, answer):
        with pytest.raises(GatewayRefusal) as info:
            await connect(sock, token="stale")
    assert info.value.fatal and info.value.sqlstate == "28P01" and "expired" in info.value.message


async def test_a_session_ended_while_idle_takes_no_statement(sock: Path) -> None:
    async with FakeGateway(sock, answer) as gw:
        conn = await connect(sock)
        gw.writers[0].write(
            ErrorResponse.build("28000", "the token of this session has expired", severity="FATAL").encode()
        )
        gw.writers[0].close()
        await asyncio.sleep(0.05)
        with pytest.raises(SessionEnded, match="expired"):
            await conn.execute("five", max_rows=5)
        assert conn.closed and gw.statements == []
        await conn.close()


async def test_cancel_sends_the_session_key(sock: Path) -> None:
    async with FakeGateway(sock, answer) as gw:
        conn = await connect(sock)
        await conn.cancel()
        await asyncio.wait_for(gw.cancelled.wait(), 5)
        await conn.close()
    assert (gw.cancels[0].process_id, gw.cancels[0].secret_key) == (7, b"secretkey")
