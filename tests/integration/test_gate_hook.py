"""The interception points: a gate's refusals, slow decisions and result transformers, with real clients.

The gateway runs in-process here (in its own thread and event loop) so that a
test gate can be plugged in; Postgres and the clients are real.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvloop

from enforcer.config import parse_config
from enforcer.identity.gateway_tokens import GatewayTokens
from enforcer.localpg import free_port
from enforcer.proxy.gate import ALLOW, SessionContext, SQLMessage, Verdict
from enforcer.proxy.server import Gateway
from enforcer.wire import Bind, DataRow, ErrorResponse, Execute, Parse, Query, ReadyForQuery
from tests.conftest import conninfo
from tests.integration.wireclient import WireClient

pytestmark = pytest.mark.integration


def sql_of(msg: SQLMessage) -> str:
    if isinstance(msg, Query):
        return msg.sql
    if isinstance(msg, Parse):
        return msg.query
    return ""


class StarTransformer:
    """Replaces every DataRow value with '*' (a stand-in for masking)."""

    def transform(self, type_byte: int, payload: bytes) -> list[tuple[int, bytes]]:
        if type_byte == ord("D"):
            row = DataRow.decode(payload)
            stars = DataRow(tuple(None if v is None else b"*" for v in row.values))
            return [(type_byte, stars.encode()[5:])]
        return [(type_byte, payload)]


class RecordingGate:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def decide(self, ctx: SessionContext, msg: SQLMessage) -> Verdict | Any:
        sql = sql_of(msg)
        self.seen.append((type(msg).__name__, sql))
        assert ctx.identity.subject == "ci-bot" and ctx.connection == "demo"
        if "forbidden" in sql:
            return Verdict(refusal=ErrorResponse.build("42501", "refused by the test gate", detail=sql))
        if "explode" in sql:
            raise RuntimeError("gate bug")
        if "slowly" in sql:
            return self._slow()
        if "starred" in sql and isinstance(msg, Query):
            return Verdict(transformer=StarTransformer(), notices=("starring this one",))
        return ALLOW

    async def _slow(self) -> Verdict:
        await asyncio.sleep(0.2)
        return ALLOW


class InProcessGateway:
    def __init__(self, gateway: Gateway, tokens: GatewayTokens) -> None:
        self.gateway = gateway
        self.tokens = tokens
        self.loop = uvloop.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        self.port = gateway.ports[0]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            task = asyncio.ensure_future(self.gateway.serve_forever(handle_signals=False))
            while not self.gateway.ports:
                await asyncio.sleep(0.01)
            self.ready.set()
            await task

        self.loop.run_until_complete(main())

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.shutdown(), self.loop).result(30)
        self.thread.join(10)

    def dsn(self, **extra: Any) -> str:
        return conninfo(
            {
                "host": "127.0.0.1",
                "port": self.port,
                "dbname": "demo",
                "user": "ci-bot",
                "password": self.tokens.issue("ci-bot", ["agents"], 600),
                "sslmode": "disable",
                **extra,
            }
        )


@pytest.fixture(scope="module")
def gate() -> RecordingGate:
    return RecordingGate()


@pytest.fixture(scope="module")
def gw(workdir: Path, upstream: Any, gateway: Any, gate: RecordingGate) -> Iterator[InProcessGateway]:
    raw = {
        "listener": {
            "host": "127.0.0.1",
            "port": free_port(),
            "insecure_loopback_dev": True,
            "shutdown_grace": 1,
        },
        "gateway_tokens": {"signing_key_file": str(workdir / "token.key")},
        "connections": {"demo": upstream.connection()},
    }
    config = parse_config(raw, base=workdir)
    tokens = GatewayTokens(config.gateway_tokens)
    g = InProcessGateway(Gateway(config, tokens, gate), tokens)
    yield g
    g.stop()


def test_every_sql_message_passes_the_gate(gw: InProcessGateway, gate: RecordingGate) -> None:
    gate.seen.clear()
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("SELECT %s::int", (1,))  # extended: Parse, Bind, Execute
        psycopg.ClientCursor(conn).execute("SELECT 2")  # simple: Query
    kinds = [k for k, _ in gate.seen]
    assert kinds[:3] == ["Parse", "BindHead", "Execute"] and "Query" in kinds


def test_simple_refusal_in_and_out_of_transactions(gw: InProcessGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            cur.execute("SELECT 'forbidden'")
        assert "refused by the test gate" in str(info.value)
        assert cur.execute("SELECT 'fine'").fetchone() == ("fine",)
        # A multi-statement message with a refused part: nothing of it runs.
        cur.execute("CREATE TEMP TABLE t (v text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO t VALUES ('a'); SELECT 'forbidden'")
        assert cur.execute("SELECT count(*) FROM t").fetchone() == (0,)
        # Inside a transaction block the refusal aborts it, as any error does.
        cur.execute("BEGIN")
        cur.execute("INSERT INTO t VALUES ('b')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("SELECT 'forbidden'")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
        cur.execute("COMMIT")  # rolls back
        assert cur.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_extended_refusal_skips_until_sync(gw: InProcessGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE p (v int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
            conn.execute("INSERT INTO p VALUES (1)")
            conn.execute("SELECT 'forbidden'")
            conn.execute("INSERT INTO p VALUES (2)")
        # The pipeline was one implicit transaction: the refusal rolled all of it back.
        assert conn.execute("SELECT count(*) FROM p").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT %s::text, 'forbidden'", ("x",), prepare=True)
        assert conn.execute("SELECT 'next'").fetchone() == ("next",)


def test_raw_extended_refusal_order(gw: InProcessGateway) -> None:
    c = WireClient(gw.port)
    c.login("ci-bot", gw.tokens.issue("ci-bot", [], 60))
    c.send(
        Parse("ok", "SELECT 1", ()).encode()
        + Bind("", "ok", (), (), ()).encode()
        + Execute("", 0).encode()
        + Parse("bad", "SELECT 'forbidden'", ()).encode()
        + Bind("", "bad", (), (), ()).encode()
        + Execute("", 0).encode()
        + b"S\x00\x00\x00\x04"
    )
    msgs = c.until(ReadyForQuery)
    names = [type(m).__name__ for m in msgs]
    assert names == [
        "ParseComplete",
        "BindComplete",
        "DataRow",
        "CommandComplete",
        "ErrorResponse",
        "ReadyForQuery",
    ]
    assert msgs[4].sqlstate == "42501" and msgs[4].field("D") == "SELECT 'forbidden'"


def test_gate_failure_fails_closed(gw: InProcessGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InternalError_) as info:
            psycopg.ClientCursor(conn).execute("SELECT 'explode'")
        assert "fail closed" in str(info.value)
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)


def test_slow_gate_keeps_pipeline_order(gw: InProcessGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn, conn.pipeline():
        cursors = [conn.execute(f"SELECT {i}, 'slowly'" if i % 2 else f"SELECT {i}") for i in range(6)]
    assert [c.fetchone()[0] for c in cursors] == list(range(6))


def test_transformer_applies_to_its_statement_only(gw: InProcessGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        cur = psycopg.ClientCursor(conn)
        cur.execute("SELECT email, 'starred' FROM customers ORDER BY id LIMIT 2")
        assert cur.fetchall() == [("*", "*"), ("*", "*")]
        assert notices == ["starring this one"]
        cur.execute("SELECT email FROM customers ORDER BY id LIMIT 1")
        assert cur.fetchall() == [("ada@example.com",)]


def test_bytes_pipelined_after_password_are_relayed(gw: InProcessGateway) -> None:
    from enforcer.wire import PasswordMessage, StartupMessage

    c = WireClient(gw.port)
    c.send(StartupMessage(params=(("user", "ci-bot"), ("database", "demo"))).encode())
    c.recv_message()  # AuthenticationCleartextPassword
    token = gw.tokens.issue("ci-bot", [], 60)
    c.send(PasswordMessage.from_password(token).encode() + Query("SELECT 'eager'").encode())
    c.until(ReadyForQuery)  # end of startup
    msgs = c.until(ReadyForQuery)
    assert any(isinstance(m, DataRow) and m.values == (b"eager",) for m in msgs)
