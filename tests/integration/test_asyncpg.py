"""asyncpg through the gateway: prepared statements, binary codecs, COPY, transactions."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.integration

TYPED_QUERY = """
SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::numeric, $7::text, $8::bytea,
       $9::bool, $10::date, $11::timestamptz, $12::interval, $13::uuid, $14::jsonb, $15::int4[],
       $16::inet, $17::time, $18::text[], $19::varchar, $20::numeric
"""
TYPED_ARGS = (
    -32768,
    2147483647,
    -9223372036854775808,
    1.5,
    2.25e300,
    decimal.Decimal("-12345.678901234567890"),
    "ünïcode ☃ text",
    b"\x00\x01\xff" * 100,
    True,
    datetime.date(2000, 2, 29),
    datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
    datetime.timedelta(days=3, seconds=7),
    uuid.uuid4(),
    '{"a": {"b": [1, 2, null]}}',
    [1, None, 3],
    ipaddress.ip_address("10.1.2.3"),
    datetime.time(23, 59, 59),
    ["a", "b,c", None],
    "x" * 1000,
    decimal.Decimal("NaN"),
)


async def connect(gateway, **kw):
    return await asyncpg.connect(
        host="127.0.0.1",
        port=gateway.port,
        user="ci-bot",
        database="demo",
        password=gateway.token(),
        ssl="require",
        **kw,
    )


async def test_binary_codecs_round_trip(gateway, upstream) -> None:
    direct = await asyncpg.connect(
        host="127.0.0.1",
        port=upstream.port,
        user="app",
        database="demo",
        password=upstream.app_password,
        ssl=False,
    )
    through = await connect(gateway)
    try:
        want = await direct.fetchrow(TYPED_QUERY, *TYPED_ARGS)
        got = await through.fetchrow(TYPED_QUERY, *TYPED_ARGS)
        assert tuple(got)[:19] == tuple(want)[:19]
        assert got[19].is_nan()
    finally:
        await direct.close()
        await through.close()


async def test_prepared_statements(gateway) -> None:
    conn = await connect(gateway)
    try:
        stmt = await conn.prepare("SELECT id, email FROM customers WHERE id = $1")
        assert [a.name for a in stmt.get_attributes()] == ["id", "email"]
        assert [p.name for p in stmt.get_parameters()] == ["int4"]
        for i in range(1, 7):
            row = await stmt.fetchrow(i)
            assert row["id"] == i
        rows = await conn.fetch("SELECT g FROM generate_series(1, $1::int) g", 3000)
        assert len(rows) == 3000
        async with conn.transaction():
            cur = conn.cursor("SELECT g FROM generate_series(1, 1000) g", prefetch=50)
            assert sum([r[0] async for r in cur]) == 500500
    finally:
        await conn.close()


async def test_copy_records_and_transactions(gateway) -> None:
    conn = await connect(gateway)
    try:
        await conn.execute("CREATE TEMP TABLE imported (id int, name text, at timestamptz)")
        now = datetime.datetime.now(datetime.UTC)
        records = [(i, f"n{i}", now) for i in range(10000)]
        await conn.copy_records_to_table("imported", records=records)
        assert await conn.fetchval("SELECT count(*) FROM imported") == 10000
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            async with conn.transaction():
                await conn.execute("DELETE FROM imported")
                await conn.execute("SELECT 1/0")
        assert await conn.fetchval("SELECT count(*) FROM imported") == 10000
        async with conn.transaction():
            await conn.execute("DELETE FROM imported WHERE id >= 5000")
        assert await conn.fetchval("SELECT count(*) FROM imported") == 5000
        out = await conn.copy_from_query("SELECT id FROM imported WHERE id < 3 ORDER BY id", output=_Sink())
        assert out.startswith("COPY")
    finally:
        await conn.close()


async def test_executemany_and_errors(gateway) -> None:
    conn = await connect(gateway)
    try:
        await conn.execute("CREATE TEMP TABLE em (id int PRIMARY KEY)")
        await conn.executemany("INSERT INTO em VALUES ($1)", [(i,) for i in range(500)])
        assert await conn.fetchval("SELECT count(*) FROM em") == 500
        with pytest.raises(asyncpg.exceptions.UniqueViolationError):
            await conn.executemany("INSERT INTO em VALUES ($1)", [(1000,), (1,)])
        with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
            await conn.fetch("SELEC 1")
        assert await conn.fetchval("SELECT 7") == 7
    finally:
        await conn.close()


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk
