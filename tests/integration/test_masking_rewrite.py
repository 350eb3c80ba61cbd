"""Masking against a real Postgres: rewritten statements run, return masked values of the right types,
leave unmasked columns alone, and never return a secret of the seeded data -- in rows, COPY output,
RETURNING or error texts; the wire masker computes the same values as the SQL, text and binary.

The statements run directly on Postgres (psycopg in text format, asyncpg in binary), not through the
gateway: this is the library's contract, the gateway's integration is tested with the gateway.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.masking import (
    Catalog,
    CatalogCache,
    ColumnMask,
    HmacKey,
    MaskingError,
    MaskPlan,
    ResultMasker,
    Rewritten,
    WireMasks,
    load_catalog,
    rewrite,
)
from enforcer.wire import DataRow, ErrorResponse, FieldDescription, RowDescription, decode_backend

pytestmark = pytest.mark.integration

SCHEMA = "pgw_masking_it"
KEY = HmacKey(b"integration-test-hmac-key-000001")

# The shipped policy data's labels (policies/rego/pgwarden/data.json, `masking`), plus a table of
# other types created for this module.
MASKS = {
    ("public", "customers", "full_name"): ColumnMask("partial", "pii.name"),
    ("public", "customers", "email"): ColumnMask("email", "pii.email"),
    ("public", "customers", "phone"): ColumnMask("partial", "pii.phone"),
    ("public", "customers", "ssn"): ColumnMask("redact", "pii.national_id"),
    ("public", "customers", "birth_date"): ColumnMask("null", "pii.birth_date"),
    ("public", "orders", "card_last4"): ColumnMask("hash", "pci.card_fragment"),
    (SCHEMA, "typed", "code"): ColumnMask("partial", "t"),
    (SCHEMA, "typed", "nick"): ColumnMask("hash", "t"),
    (SCHEMA, "typed", "token"): ColumnMask("hash", "t"),
    (SCHEMA, "typed", "doc"): ColumnMask("redact", "t"),
    (SCHEMA, "typed", "n"): ColumnMask("hash", "t"),
}
PLAN = MaskPlan(MASKS, hmac_key=KEY)

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE VIEW {SCHEMA}.contacts AS SELECT id, full_name, email, phone FROM public.customers;
CREATE VIEW {SCHEMA}.contact_upper AS SELECT id, upper(email) AS e, length(phone) AS n FROM {SCHEMA}.contacts;
CREATE VIEW {SCHEMA}.barrier WITH (security_barrier) AS
    SELECT id, email, ssn FROM public.customers WHERE id <= 3;
CREATE VIEW {SCHEMA}.order_cards AS
    SELECT o.id, o.card_last4, c.email, p.sku FROM public.orders o
    JOIN public.customers c ON c.id = o.customer_id JOIN public.products p ON p.id = o.product_id;
CREATE VIEW {SCHEMA}.skus AS SELECT sku, price FROM public.products;
CREATE TABLE {SCHEMA}.typed (
    id int PRIMARY KEY, code char(4), nick varchar(6), token uuid, doc jsonb, n int8, note text
);
INSERT INTO {SCHEMA}.typed VALUES
    (1, 'AB12', 'alicex', '11111111-2222-3333-4444-555555555555', '{{"secret": "S3CR3T-DOC"}}',
     9000000001, 'v1'),
    (2, 'Q', 'bobby7', '99999999-8888-7777-6666-555555555555', '[1, 2]', -77777, 'v2'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE FUNCTION {SCHEMA}.leak(i int) RETURNS text LANGUAGE sql
    AS $$ SELECT ssn FROM public.customers WHERE id = i $$;
CREATE VIEW {SCHEMA}.leaky AS SELECT {SCHEMA}.leak(1) AS s;
"""


@dataclass
class Env:
    dsn: str
    port: int
    password: str
    catalog: Catalog
    secrets: list[str]
    card_tokens: list[str]


def _flatten(value: Any) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        yield raw.decode("utf-8", "replace")
        yield raw.decode("latin-1")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _flatten(v)
    elif isinstance(value, list | tuple | asyncpg.Record):
        for v in value:
            yield from _flatten(v)
    else:
        yield str(value)


def leaks(env: Env, *values: Any) -> list[str]:
    """Secrets of the seeded data that appear anywhere in ``values`` (rows, errors, bytes)."""
    text = "\n".join(t for v in values for t in _flatten(v))
    found = [s for s in env.secrets if s in text]
    found += [c for c in env.card_tokens if re.search(rf"(?<![0-9A-Za-z]){c}(?![0-9A-Za-z])", text)]
    return found


@pytest.fixture(scope="module")
async def env(upstream: Any) -> AsyncIterator[Env]:
    dsn = upstream.dsn()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(SETUP)
        try:
            catalog = await load_catalog(conn)
            cur = await conn.execute(
                "SELECT full_name, email, phone, ssn, birth_date::text FROM public.customers"
            )
            secrets = sorted({str(v) for row in await cur.fetchall() for v in row if v is not None})
            cur = await conn.execute(f"SELECT nick, token::text, n::text FROM {SCHEMA}.typed")
            secrets += [str(v) for row in await cur.fetchall() for v in row if v is not None]
            secrets += ["S3CR3T-DOC", "AB12"]
            cur = await conn.execute("SELECT card_last4 FROM public.orders")
            cards = sorted({r[0] for r in await cur.fetchall()})
            # Also never the local part of an address: the email strategy keeps only the domain.
            secrets += [s.split("@")[0] + "@" for s in secrets if "@" in s]
            yield Env(dsn, upstream.port, upstream.app_password, catalog, secrets, cards)
        finally:
            await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


async def text_run(env: Env, sql: str) -> tuple[list[Any], list[tuple[Any, ...]], str | None]:
    """(column (name, type oid), rows, error text) with psycopg in text format."""
    async with await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn:
        try:
            cur = await conn.execute(sql)
        except psycopg.Error as exc:
            diag = exc.diag
            return (
                [],
                [],
                " | ".join(str(x) for x in (exc, diag.message_detail, diag.message_hint, diag.context)),
            )
        desc = [(d.name, d.type_code) for d in cur.description or ()]
        return desc, list(await cur.fetchall()) if cur.description else [], None


async def binary_run(env: Env, sql: str) -> tuple[list[Any], str | None]:
    """(records, error text) with asyncpg: a prepared statement, results in binary format."""
    conn = await asyncpg.connect(
        host="127.0.0.1", port=env.port, user="app", database="demo", password=env.password
    )
    try:
        return list(await conn.fetch(sql)), None
    except asyncpg.PostgresError as exc:
        return [], f"{exc} | {getattr(exc, 'detail', '')} | {getattr(exc, 'hint', '')}"
    finally:
        await conn.close()


def rw(env: Env, sql: str, plan: MaskPlan = PLAN) -> Rewritten:
    return rewrite(sql, plan, env.catalog, ["$user", "public"], user="app")


# --------------------------------------------------------------------------- the catalog


async def test_catalog_loads_what_masking_needs(env: Env) -> None:
    cat = env.catalog
    customers = cat.relation("public", "customers")
    assert customers is not None and customers.kind == "table"
    assert [c.name for c in customers.columns] == [
        "id",
        "full_name",
        "email",
        "phone",
        "ssn",
        "birth_date",
        "created_at",
    ]
    created = customers.column("created_at")
    assert created is not None and created.type_sql == "timestamp with time zone" and created.category == "D"
    contacts = cat.relation(SCHEMA, "contacts")
    assert contacts is not None and contacts.kind == "view"
    assert contacts.definition is not None and "FROM public.customers" in contacts.definition
    assert {att for oid, att in contacts.depends_on if oid == customers.oid} == {1, 2, 3, 4}
    barrier = cat.relation(SCHEMA, "barrier")
    assert barrier is not None and barrier.security_barrier and not contacts.security_barrier
    typed = cat.relation(SCHEMA, "typed")
    assert typed is not None
    code, nick = typed.column("code"), typed.column("nick")
    assert code is not None and code.type_sql == "character(4)" and code.typmod == 8
    assert nick is not None and nick.base_type_oid == 1043
    assert (SCHEMA, "leak") in cat.untrusted_functions
    leaky = cat.relation(SCHEMA, "leaky")
    assert leaky is not None and leaky.untrusted_calls == (f"{SCHEMA}.leak",)
    assert cat.is_system("pg_catalog", "pg_class") and cat.is_system("pg_catalog", "pg_stats")
    assert cat.search_path == ("$user", "public") and cat.current_user == "app" and cat.database == "demo"
    assert cat.server_version_num >= 110000
    assert not cat.untrusted_operators  # only built-in operators in the demo database


async def test_catalog_cache_over_a_real_control_connection(env: Env) -> None:
    async def connect(name: str) -> psycopg.AsyncConnection[Any]:
        assert name == "demo"
        return await psycopg.AsyncConnection.connect(env.dsn, autocommit=True)

    cache = CatalogCache(connect, ttl=3600)
    try:
        first = await cache.get("demo")
        assert first.relation("public", "orders") is not None
        assert await cache.get("demo") is first
        cache.invalidate("demo")
        assert await cache.get("demo") is not first
    finally:
        await cache.close()


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Case:
    sql: str
    same: tuple[int, ...] = ()  # output columns that must equal the unrewritten query's
    types: bool = True  # output types must equal the unrewritten query's
    count: bool = True  # as many rows as the unrewritten query (not so where masked values merge)


CASES = {
    "plain columns": Case(
        "SELECT id, full_name, email, phone, ssn, birth_date, created_at FROM customers ORDER BY id", (0, 6)
    ),
    "select star": Case("SELECT * FROM customers ORDER BY id", (0, 6)),
    "orders star": Case("SELECT * FROM orders ORDER BY id", (0, 1, 2, 3, 5)),
    "aliases": Case("SELECT c.id AS i, c.email AS e, c.ssn s FROM customers AS c ORDER BY 1", (0,)),
    "column aliases": Case("SELECT x.a, x.c FROM customers AS x (a, b, c) ORDER BY 1", (0,)),
    "schema-qualified": Case(
        "SELECT public.customers.id, public.customers.ssn FROM public.customers ORDER BY 1", (0,)
    ),
    "view": Case(f"SELECT * FROM {SCHEMA}.contacts ORDER BY id", (0,)),
    "view over view": Case(f"SELECT * FROM {SCHEMA}.contact_upper ORDER BY id", (0, 2)),
    "security barrier view": Case(f"SELECT * FROM {SCHEMA}.barrier WHERE id > 1 ORDER BY id", (0,)),
    "view over three tables": Case(f"SELECT * FROM {SCHEMA}.order_cards ORDER BY id", (0, 3)),
    "view without masked columns": Case(f"SELECT * FROM {SCHEMA}.skus ORDER BY sku", (0, 1)),
    "cte": Case("WITH x AS (SELECT * FROM customers) SELECT id, email, ssn FROM x ORDER BY id", (0,)),
    "cte shadowing the table": Case(
        "WITH customers AS (SELECT id, email FROM public.customers) "
        "SELECT id, email FROM customers ORDER BY id",
        (0,),
    ),
    "sub-selects": Case(
        "SELECT id, (SELECT ssn FROM customers c2 WHERE c2.id = c.id), "
        "EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id) "
        "FROM (SELECT id, email FROM customers) c ORDER BY id",
        (0, 2),
    ),
    "lateral": Case(
        "SELECT c.id, l.* FROM customers c, LATERAL (SELECT c.email || '/' || c.phone AS both) l ORDER BY 1",
        (0,),
    ),
    "union": Case("SELECT email FROM customers UNION SELECT ssn FROM customers ORDER BY 1", count=False),
    "intersect and except": Case(
        "SELECT phone FROM customers INTERSECT SELECT phone FROM customers EXCEPT SELECT 'x' ORDER BY 1"
    ),
    "expressions": Case(
        "SELECT id, upper(email), email || '', lower(full_name), length(ssn), substr(phone, 1, 3), "
        "coalesce(birth_date, '2000-01-01') FROM customers ORDER BY id",
        (0,),
    ),
    "casts": Case(
        "SELECT id, email::varchar(5), birth_date::text, ssn::bytea, full_name::name "
        "FROM customers ORDER BY id",
        (0,),
    ),
    "aggregates": Case(
        "SELECT string_agg(email, ',' ORDER BY id), json_agg(ssn ORDER BY id), "
        "array_agg(full_name ORDER BY id), count(phone), max(birth_date) FROM customers"
    ),
    "json of a table": Case("SELECT json_agg(o ORDER BY o.id), jsonb_agg(c) FROM orders o, customers c"),
    "whole row": Case("SELECT u FROM customers u ORDER BY id", types=False),
    "whole row functions": Case(
        "SELECT row_to_json(u), to_jsonb(customers), row_to_json(u.*) "
        "FROM customers u JOIN customers ON customers.id = u.id ORDER BY u.id"
    ),
    "filter on masked values": Case("SELECT count(*) FROM customers WHERE ssn = '123-45-6789'"),
    "group and order by masked": Case(
        "SELECT email, count(*) FROM customers GROUP BY email ORDER BY email", count=False
    ),
    "hash joins line up": Case(
        "SELECT count(*) FROM orders a JOIN orders b ON a.card_last4 = b.card_last4", (0,)
    ),
    "hash groups line up": Case("SELECT count(DISTINCT card_last4) = count(*) FROM orders", (0,)),
    "other types": Case(f"SELECT * FROM {SCHEMA}.typed ORDER BY id", (0, 6)),
    "values and set-returning functions": Case(
        "SELECT g, (SELECT email FROM customers WHERE id = g) FROM generate_series(1, 3) g ORDER BY g", (0,)
    ),
    "distinct and window": Case(
        "SELECT DISTINCT ON (customer_id) customer_id, card_last4, "
        "row_number() OVER (PARTITION BY card_last4 ORDER BY id) FROM orders ORDER BY customer_id",
        (0,),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_reads_are_masked(env: Env, name: str) -> None:
    case = CASES[name]
    rewritten = rw(env, case.sql)
    desc, rows, error = await text_run(env, rewritten.sql)
    assert error is None, error
    brows, berror = await binary_run(env, rewritten.sql)
    assert berror is None, berror
    assert len(brows) == len(rows)
    assert not leaks(env, rows, brows), f"secret in the result of {rewritten.sql}"
    odesc, orows, oerror = await text_run(env, case.sql)
    assert oerror is None
    assert [d[0] for d in desc] == [d[0] for d in odesc], "output names changed"
    if case.types:
        assert [d[1] for d in desc] == [d[1] for d in odesc], "output types changed"
    if case.count:
        assert len(rows) == len(orows)
    for i in case.same:
        assert [r[i] for r in rows] == [r[i] for r in orows], f"unmasked column {i} changed"


async def test_plain_columns_have_the_expected_masked_values(env: Env) -> None:
    _, rows, _ = await text_run(
        env, rw(env, "SELECT full_name, email, phone, ssn, birth_date FROM customers ORDER BY id").sql
    )
    assert rows[0] == ("********lace", "***@example.com", "************0001", "****", None)
    assert rows[3] == ("***********stra", "***@example.nl", "***********0199", "****", None)


async def test_masking_a_view_keeps_the_views_own_filter(env: Env) -> None:
    _, rows, _ = await text_run(env, rw(env, f"SELECT id FROM {SCHEMA}.barrier ORDER BY id").sql)
    assert [r[0] for r in rows] == [1, 2, 3]


async def test_hash_is_stable_and_joins_line_up(env: Env) -> None:
    sql = rw(
        env, "SELECT o.card_last4 FROM orders o JOIN orders p ON p.card_last4 = o.card_last4 ORDER BY o.id"
    ).sql
    _, first, _ = await text_run(env, sql)
    _, second, _ = await text_run(env, sql)
    assert first == second and len(first) == 12
    assert all(re.fullmatch(r"[0-9a-f]{64}", r[0]) for r in first)


# --------------------------------------------------------------------------- errors

LEAKY_ERRORS = {
    "SELECT email::int FROM customers",
    "SELECT ssn::date FROM customers",
    "SELECT full_name::numeric FROM customers",
    "SELECT phone::int FROM customers",
    "SELECT card_last4::uuid FROM orders",
}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT email::int FROM customers",
        "SELECT ssn::date FROM customers",
        "SELECT full_name::numeric FROM customers",
        "SELECT phone::int FROM customers",
        "SELECT card_last4::uuid FROM orders",
        "SELECT (SELECT email FROM customers ORDER BY id LIMIT 1)::int",
        f"SELECT e::int FROM {SCHEMA}.contact_upper",
        "SELECT 1 / (length(ssn) - 4) FROM customers",
        "SELECT to_date(email, 'YYYY') FROM customers",
    ],
)
async def test_error_texts_quote_only_masked_values(env: Env, sql: str) -> None:
    rewritten = rw(env, sql)
    _, _, error = await text_run(env, rewritten.sql)
    _, berror = await binary_run(env, rewritten.sql)
    assert error is not None and berror is not None
    assert not leaks(env, error, berror), error
    _, _, original = await text_run(env, sql)
    if sql in LEAKY_ERRORS:
        assert original is not None and leaks(env, original), "the unmasked statement would have leaked"


# --------------------------------------------------------------------------- writes


RETURNING = [
    "UPDATE customers SET phone = phone WHERE id <= 2 RETURNING *",
    "UPDATE customers c SET full_name = full_name WHERE id = 1 "
    "RETURNING c, row_to_json(c), (SELECT c.ssn), c.email",
    "DELETE FROM orders WHERE id <= 3 RETURNING *",
    "INSERT INTO customers (id, full_name, email) VALUES (1, 'x', 'y') "
    "ON CONFLICT (id) DO UPDATE SET phone = customers.phone RETURNING *",
    "INSERT INTO audit_notes (note) SELECT ssn || email FROM customers RETURNING note",
    "WITH d AS (UPDATE customers SET phone = phone RETURNING *) SELECT * FROM d",
    "UPDATE customers SET full_name = full_name WHERE ssn = '123-45-6789' RETURNING id",
    "UPDATE orders o SET quantity = o.quantity FROM customers c WHERE c.id = o.customer_id "
    "RETURNING o.*, c.*",
]


@pytest.mark.parametrize("sql", RETURNING)
async def test_returning_is_masked(env: Env, sql: str) -> None:
    rewritten = rw(env, sql)
    assert rewritten.changed
    async with (
        await psycopg.AsyncConnection.connect(env.dsn) as conn,
        conn.transaction(force_rollback=True),
    ):
        cur = await conn.execute(rewritten.sql)
        rows = await cur.fetchall()
    conn2 = await asyncpg.connect(
        host="127.0.0.1", port=env.port, user="app", database="demo", password=env.password
    )
    try:
        tr = conn2.transaction()
        await tr.start()
        brows = await conn2.fetch(rewritten.sql)
        await tr.rollback()
    finally:
        await conn2.close()
    assert len(rows) == len(brows)
    assert not leaks(env, rows, brows)
    if "ssn = '123-45-6789'" in sql:
        assert rows == []  # the write's WHERE compared masked values too


async def test_set_keeps_real_values_for_columns_masked_as_strictly(env: Env) -> None:
    sql = "UPDATE customers SET email = upper(email), full_name = ssn WHERE id = 1"
    async with (
        await psycopg.AsyncConnection.connect(env.dsn) as conn,
        conn.transaction(force_rollback=True),
    ):
        await conn.execute(rw(env, sql).sql)
        cur = await conn.execute("SELECT email, full_name FROM customers WHERE id = 1")
        assert await cur.fetchone() == ("ADA@EXAMPLE.COM", "****")


async def test_errors_of_writes_are_withheld_by_the_wire_masker(env: Env) -> None:
    # A CHECK violation's DETAIL quotes the whole failing row, card number included.
    rewritten = rw(env, "UPDATE orders SET quantity = 0 WHERE id = 1 RETURNING card_last4")
    assert rewritten.scrub_errors
    async with await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as err:
            await conn.execute(rewritten.sql)
    diag = err.value.diag
    raw = ErrorResponse(
        tuple(
            (code, value)
            for code, value in (
                ("S", diag.severity),
                ("C", diag.sqlstate),
                ("M", diag.message_primary),
                ("D", diag.message_detail),
                ("t", diag.table_name),
                ("n", diag.constraint_name),
            )
            if value is not None
        )
    )
    assert leaks(env, raw.fields), "Postgres quotes the row"
    masker = ResultMasker(WireMasks.build(PLAN, env.catalog), rewritten=rewritten)
    out = [decode_backend(t, p) for t, p in masker.transform(ord("E"), raw.encode()[5:])]
    assert out[0].sqlstate == "23514" and not leaks(env, out[0].fields)


# --------------------------------------------------------------------------- COPY


@pytest.mark.parametrize(
    "sql",
    [
        "COPY customers TO STDOUT",
        "COPY customers TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (email))",
        "COPY customers (ssn, id, email) TO STDOUT (FORMAT binary)",
        "COPY orders TO STDOUT (FORMAT csv)",
        "COPY (SELECT c, email FROM customers c) TO STDOUT",
        f"COPY (SELECT * FROM {SCHEMA}.order_cards) TO STDOUT (FORMAT binary)",
        "COPY (DELETE FROM customers WHERE id > 100 RETURNING *) TO STDOUT",
    ],
)
async def test_copy_to_is_masked(env: Env, sql: str) -> None:
    rewritten = rw(env, sql)
    assert rewritten.changed
    data = bytearray()
    async with await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn:
        cur = conn.cursor()
        async with cur.copy(rewritten.sql) as copy:
            async for chunk in copy:
                data += chunk
    assert data or "id > 100" in sql
    assert not leaks(env, bytes(data))
    original = bytearray()
    async with await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn:
        cur = conn.cursor()
        async with cur.copy(sql) as copy:
            async for chunk in copy:
                original += chunk
    if "id > 100" not in sql:
        assert leaks(env, bytes(original)), "the unmasked COPY would have leaked"
    if "binary" in sql:
        assert bytes(data[:11]) == b"PGCOPY\n\xff\r\n\x00"
    else:
        assert bytes(data).count(b"\n") == bytes(original).count(b"\n")


async def test_copy_text_matches_the_masked_select(env: Env) -> None:
    data = bytearray()
    sql = rw(env, "COPY customers (id, email, ssn) TO STDOUT").sql
    async with (
        await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn,
        conn.cursor().copy(sql) as copy,
    ):
        async for chunk in copy:
            data += chunk
    lines = bytes(data).decode().splitlines()
    assert lines[0] == "1\t***@example.com\t****"


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        (f"SELECT {SCHEMA}.leak(1)", "leak"),
        (f"SELECT * FROM {SCHEMA}.leaky", "leak"),
        ("SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'", "pg_stats"),
        ("SELECT query FROM pg_stat_activity", "pg_stat_activity"),
        ("SELECT query_to_xml('SELECT ssn FROM customers', true, true, '')", "query_to_xml"),
        ("EXPLAIN VERBOSE SELECT card_last4 FROM orders", "hash"),
        ("SELECT * FROM temp_table_nobody_created", "catalog"),
        ("DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$", "DO"),
    ],
)
async def test_what_cannot_be_masked_is_refused(env: Env, sql: str, why: str) -> None:
    with pytest.raises(MaskingError) as err:
        rw(env, sql)
    assert why in err.value.reason
    assert not leaks(env, err.value.reason)


async def test_deny_mode_refuses_filters_on_masked_values(env: Env) -> None:
    deny = MaskPlan(MASKS, hmac_key=KEY, predicates="deny")
    with pytest.raises(MaskingError, match="policy does not allow"):
        rw(env, "SELECT id FROM customers WHERE ssn = '123-45-6789'", deny)
    _, rows, _ = await text_run(env, rw(env, "SELECT id, ssn FROM customers WHERE id = 1", deny).sql)
    assert rows == [(1, "****")]


# --------------------------------------------------------------------------- the wire masker


def _frames(res: Any) -> list[tuple[int, bytes]]:
    """The RowDescription and DataRows of a libpq result, re-encoded as the server sent them."""
    fields = tuple(
        FieldDescription(
            res.fname(i).decode(),
            res.ftable(i),
            res.ftablecol(i),
            res.ftype(i),
            res.fsize(i),
            res.fmod(i),
            res.fformat(i),
        )
        for i in range(res.nfields)
    )
    msgs: list[Any] = [RowDescription(fields)]
    for r in range(res.ntuples):
        msgs.append(DataRow(tuple(res.get_value(r, c) for c in range(res.nfields))))
    out = []
    for m in msgs:
        raw = m.encode()
        out.append((raw[0], raw[5:]))
    return out


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, full_name, email, phone, ssn, birth_date, created_at FROM customers ORDER BY id",
        "SELECT id, card_last4, customer_id FROM orders ORDER BY id",
        f"SELECT id, code, nick, token, doc, n, note FROM {SCHEMA}.typed ORDER BY id",
    ],
)
async def test_wire_masker_computes_what_the_sql_computes(env: Env, sql: str, binary: bool) -> None:
    """Unrewritten rows masked on the wire are byte-identical to the rewritten statement's rows."""
    async with await psycopg.AsyncConnection.connect(env.dsn, autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        await cur.execute(sql)
        assert cur.pgresult is not None
        raw = _frames(cur.pgresult)
        await cur.execute(rw(env, sql).sql)
        assert cur.pgresult is not None
        expected = [decode_backend(t, p) for t, p in _frames(cur.pgresult)]
    masker = ResultMasker(WireMasks.build(PLAN, env.catalog), rewritten=None)
    got = [decode_backend(t, p) for frame in raw for t, p in masker.transform(*frame)]
    assert [m.values for m in got if isinstance(m, DataRow)] == [
        m.values for m in expected if isinstance(m, DataRow)
    ]
    assert masker.masked_fields > 0


# --------------------------------------------------------------------------- property


def _columns() -> dict[str, list[str]]:
    return {
        "customers": ["id", "full_name", "email", "phone", "ssn", "birth_date", "created_at"],
        "orders": ["id", "customer_id", "product_id", "quantity", "card_last4", "ordered_at"],
        "products": ["id", "sku", "name", "price"],
        f"{SCHEMA}.contacts": ["id", "full_name", "email", "phone"],
        f"{SCHEMA}.order_cards": ["id", "card_last4", "email", "sku"],
    }


_FORMS = [
    "{c}",
    "upper({c}::text)",
    "{c}::text || '~'",
    "length({c}::text)",
    "coalesce({c}::text, 'none')",
    "md5({c}::text)",
    "split_part({c}::text, '@', 1)",
    "substr({c}::text, 2, 5)",
    "reverse({c}::text)",
    "({c})::varchar(3)",
    "row_to_json({a})",
    "{a}",
    "to_jsonb({a}) ->> '{col}'",
    "({a}).{col}",
    "json_build_object('k', {c})",
    "ARRAY[{c}::text]",
    "CASE WHEN {c} IS NULL THEN 'n' ELSE {c}::text END",
    "(SELECT max(x.{col}::text) FROM {t} x)",
    "(SELECT string_agg(x::text, ';') FROM {t} x WHERE x.id = {a}.id)",
]


@st.composite
def _value(draw: Any, alias: str, table: str, columns: list[str]) -> str:
    column = draw(st.sampled_from(columns))
    ref = draw(st.sampled_from([f"{alias}.{column}", f"{alias}.{column}"]))
    form = draw(st.sampled_from(_FORMS))
    return form.format(c=ref, a=alias, col=column, t=table)


@st.composite
def _select(draw: Any, width: int | None = None) -> str:
    """A SELECT over the demo schema with every output cast to text (so branches can be unioned)."""
    tables = _columns()
    table = draw(st.sampled_from(sorted(tables)))
    columns = tables[table]
    source = draw(
        st.sampled_from(
            [
                f"{table} t",
                f"(SELECT * FROM {table}) t",
                f"(SELECT * FROM {table} ORDER BY 1 LIMIT 4) t",
                "w t",
            ]
        )
    )
    scopes = [("t", table, columns)]
    join = draw(st.sampled_from(["", "join", "lateral", "cross"]))
    if join:
        other = draw(st.sampled_from(sorted(tables)))
        ocols = tables[other]
        if join == "join":
            source += f" JOIN {other} u ON u.id = t.id"
        elif join == "lateral":
            v = draw(_value("t", table, columns))
            source += f", LATERAL (SELECT ({v})::text AS lv, y.* FROM {other} y WHERE y.id = t.id) u"
            ocols = ["lv", *ocols]
        else:
            source += f" CROSS JOIN (SELECT * FROM {other} LIMIT 2) u"
        scopes.append(("u", other, ocols))
    n = width if width is not None else draw(st.integers(1, 3))
    values = []
    for _ in range(n):
        alias, tname, cols = draw(st.sampled_from(scopes))
        values.append(draw(_value(alias, tname, cols)))
    shape = draw(st.sampled_from(["plain", "aggregate", "group", "window", "distinct"]))
    if shape == "aggregate":
        aggs = [
            "string_agg(({v})::text, ',')",
            "count({v})::text",
            "json_agg({v})::text",
            "max(({v})::text)",
            "array_agg({v})::text",
            "json_agg(t)::text",
        ]
        items = [draw(st.sampled_from(aggs)).format(v=v) for v in values]
    elif shape == "window":
        items = [f"(first_value(({v})::text) OVER (PARTITION BY t.id ORDER BY ({v})::text))" for v in values]
    else:
        items = [f"({v})::text" for v in values]
    distinct = "DISTINCT " if shape == "distinct" else ""
    sql = f"SELECT {distinct}{', '.join(items)} FROM {source}"
    if draw(st.booleans()):
        column = draw(st.sampled_from(columns))
        sql += draw(
            st.sampled_from(
                [
                    f" WHERE t.{column}::text LIKE '%a%'",
                    f" WHERE t.{column} IS NOT NULL",
                    f" WHERE length(t.{column}::text) > 3",
                    f" WHERE t.{column}::text IN (SELECT z.{column}::text FROM {table} z)",
                    f" WHERE EXISTS (SELECT 1 FROM {table} z WHERE z.{column} = t.{column})",
                ]
            )
        )
    if shape == "group":
        sql += " GROUP BY 1" + "".join(f", {i + 2}" for i in range(n - 1))
        if draw(st.booleans()):
            sql += " HAVING count(*) > 0"
    if shape not in ("aggregate",) and draw(st.booleans()):
        sql += " ORDER BY 1"
    if source.startswith("w "):
        sql = f"WITH w AS (SELECT * FROM {table}) {sql}"
    if width is None and draw(st.integers(0, 3)) == 0:
        op = draw(st.sampled_from(["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]))
        sql = f"({sql}) {op} ({draw(_select(n))})"
    return sql


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sql=_select())
def test_no_secret_in_any_generated_select(env: Env, sql: str) -> None:
    """Random SELECTs over the demo schema: the rewritten statement never returns a secret."""
    try:
        rewritten = rewrite(sql, PLAN, env.catalog, ["$user", "public"], user="app")
    except MaskingError as exc:
        assert not leaks(env, exc.reason)
        return
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        try:
            rows = conn.execute(rewritten.sql).fetchall()
        except psycopg.Error as exc:
            rows = [str(exc), exc.diag.message_detail, exc.diag.context]
    assert not leaks(env, rows), f"{sql}\n-> {rewritten.sql}"
