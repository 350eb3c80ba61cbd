"""psycopg 3 through the gateway: simple/extended protocol, pipelines, COPY, NOTIFY, cursors, cancel."""

from __future__ import annotations

import datetime
import decimal
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.integration

QUERIES = [
    ("SELECT id, full_name, email, phone, ssn, birth_date FROM customers ORDER BY id", None),
    ("SELECT * FROM orders WHERE customer_id = %s ORDER BY id", (2,)),
    (
        "SELECT %s::int + %s::int, %s::text, %s::numeric, %s::date, %s::uuid, %s::jsonb",
        (
            1,
            2,
            "héllo ☃",
            decimal.Decimal("3.14"),
            datetime.date(2024, 2, 29),
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            psycopg.types.json.Jsonb({"k": [1, None]}),
        ),
    ),
    ("SELECT generate_series(1, 2000) AS n, md5(random()::text) IS NOT NULL AS ok", None),
]


def fetch_all(dsn: str, *, prepare: bool, binary: bool) -> list:
    results = []
    with psycopg.connect(dsn, prepare_threshold=0 if prepare else None) as conn:
        for q, params in QUERIES:
            with conn.cursor(binary=binary) as cur:
                cur.execute(q, params)
                results.append((tuple(d.name for d in cur.description), cur.fetchall()))
    return results


@pytest.mark.parametrize("prepare,binary", [(False, False), (True, False), (True, True)])
def test_results_identical_to_direct(gateway, upstream, prepare: bool, binary: bool) -> None:
    assert fetch_all(gateway.dsn(), prepare=prepare, binary=binary) == fetch_all(
        upstream.dsn(), prepare=prepare, binary=binary
    )


def test_simple_protocol_multi_statement(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("SELECT 1; SELECT 'two'")
        assert cur.fetchall() == [(1,)]
        assert cur.nextset() and cur.fetchall() == [("two",)]


def test_pipeline_mode(gateway) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE pipe (id int PRIMARY KEY, v text)")
        with conn.pipeline() as p:
            cursors = [
                conn.execute("INSERT INTO pipe VALUES (%s, %s) RETURNING id", (i, f"v{i}")) for i in range(50)
            ]
            p.sync()
            got = [c.fetchone()[0] for c in cursors]
        assert got == list(range(50))
        # An error inside a pipeline aborts the rest up to the sync, exactly as upstream.
        with pytest.raises(psycopg.errors.UniqueViolation), conn.pipeline():
            conn.execute("INSERT INTO pipe VALUES (1, 'dup')")
            conn.execute("INSERT INTO pipe VALUES (1000, 'skipped')")
        assert conn.execute("SELECT count(*) FROM pipe").fetchone() == (50,)


def test_transactions_and_aborted_state(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute("CREATE TEMP TABLE tx (v int)")
        conn.commit()
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        with conn.transaction():
            conn.execute("INSERT INTO tx VALUES (1)")
            with conn.transaction():
                conn.execute("INSERT INTO tx VALUES (2)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.commit()
        assert conn.execute("SELECT array_agg(v ORDER BY v) FROM tx").fetchone() == ([1, 2],)


def test_copy_both_ways(gateway) -> None:
    rows = [(i, f"name {i}", None if i % 7 == 0 else i * 1.5) for i in range(5000)]
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute("CREATE TEMP TABLE c (id int, name text, score float8)")
        with conn.cursor().copy("COPY c FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        with conn.cursor().copy("COPY c FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "float8"])
            for r in rows[:10]:
                copy.write_row(r)
        with conn.cursor().copy("COPY (SELECT * FROM c ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "float8"])
            out = list(copy.rows())
        assert len(out) == 5010
        assert sorted(set(out)) == rows
        assert out.count((7, "name 7", None)) == 2
        with conn.cursor().copy(
            "COPY (SELECT id FROM c WHERE id < 3 ORDER BY 1) TO STDOUT (FORMAT binary)"
        ) as copy:
            copy.set_types(["int4"])
            assert [r[0] for r in copy.rows()] == [0, 0, 1, 1, 2, 2]
        # A COPY that fails mid-stream reports the error and the session stays usable.
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation),
            conn.cursor().copy("COPY c (id) FROM STDIN") as copy,
        ):
            copy.write(b"1\nnot-a-number\n")
        conn.rollback()
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_listen_notify(gateway) -> None:
    with (
        psycopg.connect(gateway.dsn(), autocommit=True) as listener,
        psycopg.connect(gateway.dsn(), autocommit=True) as sender,
    ):
        listener.execute("LISTEN pgwarden_test")
        sender.execute("NOTIFY pgwarden_test, 'hello ☃'")
        sender.execute("SELECT pg_notify('pgwarden_test', 'second')")
        got = []
        for n in listener.notifies(timeout=10, stop_after=2):
            got.append((n.channel, n.payload))
        assert got == [("pgwarden_test", "hello ☃"), ("pgwarden_test", "second")]


def test_server_side_cursor(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn, conn.cursor(name="big") as cur:
        cur.itersize = 100
        cur.execute("SELECT g FROM generate_series(1, 10000) g")
        total = sum(r[0] for r in cur)
        assert total == 10000 * 10001 // 2


def test_cancel_long_query(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - t0 < 25  # cancelled, not timed out
        conn.rollback()
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)


def test_parameter_status_and_settings(gateway) -> None:
    with psycopg.connect(gateway.dsn(application_name="pgwarden-test")) as conn:
        assert conn.info.parameter_status("application_name") == "pgwarden-test"
        assert conn.info.parameter_status("server_encoding") == "UTF8"
        conn.execute("SET application_name = 'renamed'")
        assert conn.info.parameter_status("application_name") == "renamed"
        assert conn.info.backend_pid != conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_identifier_quoting_and_unicode(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (x text)").format(sql.Identifier("Ünïcode table")))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier("Ünïcode table")), ("☃ x",))
        assert conn.execute('SELECT x FROM "Ünïcode table"').fetchone() == ("☃ x",)
