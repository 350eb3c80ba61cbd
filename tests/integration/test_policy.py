"""The shipped policies in the data path: denials never reach Postgres, fail closed, decision records."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import SHIPPED_POLICY
from tests.integration.opa_server import OPAServer

pytestmark = pytest.mark.integration


def count(upstream: Any, sql: str) -> str:
    return upstream.pg.psql(sql, database="demo", user="app", password=upstream.app_password).strip()


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory(policy={"paths": [str(SHIPPED_POLICY)]})


@pytest.fixture
def agent(gw):
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        yield psycopg.ClientCursor(conn)


DESTRUCTIVE = [
    "DELETE FROM orders",
    "UPDATE orders SET quantity = 0",
    "DROP TABLE orders",
    "TRUNCATE orders",
    "ALTER TABLE orders DROP COLUMN quantity",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
    "SELECT 1; DELETE FROM orders",
    "DO $$ BEGIN DELETE FROM orders; END $$",
    "/* harmless */ DELETE /* really */ FROM orders",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "SELECT * INTO orders_copy FROM orders",
    "CREATE TABLE orders_copy AS SELECT * FROM orders",
    "COPY orders TO PROGRAM 'cat > /tmp/pgwarden-leak'",
    'DELETE FROM U&"\\006frders"',
]


@pytest.mark.parametrize("sql", DESTRUCTIVE)
def test_destructive_statements_never_reach_postgres(agent, upstream, sql: str) -> None:
    before = count(upstream, "SELECT count(*) FROM orders")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        agent.execute(sql)
    assert "pgwarden denied this statement" in str(info.value)
    assert info.value.diag.message_detail.startswith("decision id ")
    assert count(upstream, "SELECT count(*) FROM orders") == before
    assert (
        count(upstream, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders'") == "6"
    )
    assert count(upstream, "SELECT to_regclass('orders_copy') IS NULL") == "t"


@pytest.mark.parametrize(
    "sql",
    [
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT pg_terminate_backend(pg_backend_pid())",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT query_to_xml('DELETE FROM orders', true, true, '')",
        "PREPARE wipe AS DELETE FROM orders",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "GRANT ALL ON orders TO PUBLIC",
    ],
)
def test_dangerous_statements_denied(agent, sql: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        agent.execute(sql)
    assert agent.execute("SELECT current_user").fetchone() == ("app",)


def test_reads_allowed_and_writes_need_review(agent, upstream) -> None:
    assert agent.execute("SELECT name, price FROM products ORDER BY id").fetchall()[0] == (
        "Mechanical keyboard",
        129,
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        agent.execute("UPDATE products SET price = 1 WHERE id = 1")
    assert "needs approval" in str(info.value)
    assert count(upstream, "SELECT price FROM products WHERE id = 1") == "129.00"


def test_labelled_columns_are_never_returned_unmasked(agent) -> None:
    for sql in (
        "SELECT email FROM customers",
        "SELECT * FROM customers",
        "SELECT c FROM customers c",
        "SELECT upper(ssn) FROM customers",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            agent.execute(sql)
        assert "masked columns" in str(info.value)


def test_denial_inside_transaction_aborts_it(gw, upstream) -> None:
    with psycopg.connect(gw.dsn()) as conn:
        conn.execute("SELECT name FROM products")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
    # COMMIT of an aborted transaction rolls back (psql-style, simple protocol).
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("BEGIN")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("DROP TABLE orders")
        cur.execute("COMMIT")
        assert cur.statusmessage == "ROLLBACK"


def test_extended_protocol_denial_skips_until_sync(gw, upstream) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
            conn.execute("SELECT name FROM products WHERE id = %s", (1,))
            conn.execute("DELETE FROM orders WHERE id > %s", (-1,))
            conn.execute("SELECT name FROM products WHERE id = %s", (2,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE orders", prepare=True)
        assert conn.execute("SELECT name FROM products WHERE id = %s", (3,)).fetchone() == (
            "27 inch monitor",
        )


def test_sql_prepare_execute(agent) -> None:
    agent.execute("PREPARE cheap AS SELECT name FROM products WHERE price < $1 ORDER BY price")
    assert agent.execute("EXECUTE cheap(60)").fetchall() == [("USB-C cable",), ("Trackball mouse",)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        agent.execute("EXECUTE never_prepared")
    agent.execute("DEALLOCATE cheap")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        agent.execute("EXECUTE cheap(60)")


def test_pinned_settings(agent) -> None:
    for sql in (
        "SET client_encoding = 'LATIN1'",
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            agent.execute(sql)
        assert "pinned" in str(info.value)
    assert agent.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_parse_error_is_a_syntax_error(agent) -> None:
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        agent.execute("SELEC name FROM products")
    assert "syntax error" in str(info.value)


def test_decision_records(gw, agent) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        agent.execute("DROP TABLE products")
    decision_id = info.value.diag.message_detail.split()[2].rstrip(";")
    records = {r["decision_id"]: r for r in gw.decisions()}
    rec = records[decision_id]
    assert rec["path"] == "pgwarden/decision" and rec["timestamp"].endswith("Z")
    assert rec["result"]["action"] == "deny" and rec["enforcement"]["forwarded"] is False
    assert rec["input"]["identity"]["subject"] == "ci-bot"
    assert rec["input"]["statement"]["kind"] == "ddl"
    assert rec["input"]["statement"]["text"] == "DROP TABLE products"
    assert "ast" not in rec["input"]["statement"]  # erased by default (audit.record_ast)
    assert rec["labels"]["policy_version"] and rec["labels"]["engine"] == "embedded"
    # Every record is valid JSON with the same input shape the policy saw (minus the AST).
    for r in gw.decisions():
        assert {
            "decision_id",
            "timestamp",
            "path",
            "input",
            "result",
            "labels",
            "metrics",
            "enforcement",
        } <= set(r)


def test_opa_backend_and_fail_closed(gateway_factory) -> None:
    opa = OPAServer([SHIPPED_POLICY])
    try:
        gw = gateway_factory(
            policy={"engine": "opa", "opa": {"url": opa.url, "timeout": "300ms"}, "decision_cache_ttl": 0}
        )
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            cur = psycopg.ClientCursor(conn)
            assert cur.execute("SELECT count(*) FROM products").fetchone() == (4,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                cur.execute("DROP TABLE orders")
            assert opa.requests >= 2
            for mode, fragment in [
                ("slow", "did not answer"),
                ("malformed", "unknown action"),
                ("undefined", "undefined"),
                ("error", "HTTP 500"),
            ]:
                opa.mode = mode
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                    cur.execute("SELECT count(*) FROM products")
                assert "fail closed" in str(info.value) and fragment in str(info.value), mode
            opa.mode = "normal"
            assert cur.execute("SELECT count(*) FROM products").fetchone() == (4,)
            opa.stop()
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                cur.execute("SELECT count(*) FROM products")
            assert "unreachable" in str(info.value)
    finally:
        opa.stop()


def test_a_pinned_setting_changed_behind_the_gates_back_ends_the_session(gw, upstream) -> None:
    """A function the policy cannot see into turns standard_conforming_strings off: the server's
    ParameterStatus ends the session, and the client gets no result parsed under other rules."""
    count(
        upstream,
        "CREATE OR REPLACE FUNCTION sneaky_scs() RETURNS text LANGUAGE sql "
        "AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$",
    )
    try:
        with psycopg.connect(gw.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
                conn.execute("SELECT sneaky_scs()")
            assert "standard_conforming_strings changed to 'off'" in str(info.value)
            assert "session was ended" in str(info.value)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        count(upstream, "DROP FUNCTION sneaky_scs()")
