"""Strategies: the SQL builders' shapes and the Python maskers' values, text and binary."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid

import pytest
from pglast import parse_sql

from enforcer.masking import ColumnMask, HmacKey, MaskingError, MaskPlan
from enforcer.masking.strategies import (
    ValueKind,
    ValueMasker,
    cast_type_sql,
    effective_strategy,
    mask_sql,
    masked_text,
    value_kind,
)

from .catalog_fixture import CUSTOMERS, KEY, TYPED, col

TEXT = 25


def masker(
    strategy: str, oid: int = TEXT, category: str = "S", typmod: int = -1, keep: int = 4
) -> ValueMasker:
    return ValueMasker(ColumnMask(strategy, "l", keep), oid, category, typmod, key=KEY, redact_text="****")


# --------------------------------------------------------------------------- key


def test_hmac_key_blocks_reproduce_hmac() -> None:
    msg = b"4242"
    inner = hashlib.sha256(KEY.inner_block + msg).digest()
    assert hashlib.sha256(KEY.outer_block + inner).digest() == hmac.new(KEY.secret, msg, "sha256").digest()
    assert KEY.digest(msg) == hmac.new(KEY.secret, msg, "sha256").digest()


def test_long_key_is_hashed_first() -> None:
    key = HmacKey(b"x" * 100)
    inner = hashlib.sha256(key.inner_block + b"m").digest()
    assert hashlib.sha256(key.outer_block + inner).digest() == hmac.new(key.secret, b"m", "sha256").digest()


def test_key_is_never_shown_and_must_be_long_enough() -> None:
    assert KEY.secret.decode() not in repr(KEY)
    with pytest.raises(ValueError):
        HmacKey(b"short")


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("oid", "category", "kind"),
    [
        (25, "S", ValueKind.TEXT),
        (1043, "S", ValueKind.TEXT),
        (1042, "S", ValueKind.TEXT),
        (19, "S", ValueKind.TEXT),
        (21, "N", ValueKind.INT2),
        (23, "N", ValueKind.INT4),
        (20, "N", ValueKind.INT8),
        (2950, "U", ValueKind.UUID),
        (114, "U", ValueKind.JSON),
        (3802, "U", ValueKind.JSONB),
        (1700, "N", ValueKind.OTHER),
        (1082, "D", ValueKind.OTHER),
        (16, "B", ValueKind.OTHER),
    ],
)
def test_value_kinds(oid: int, category: str, kind: ValueKind) -> None:
    assert value_kind(oid, category) is kind


@pytest.mark.parametrize(
    ("strategy", "kind", "applied"),
    [
        ("partial", ValueKind.TEXT, "partial"),
        ("hash", ValueKind.INT4, "hash"),
        ("redact", ValueKind.INT4, "null"),
        ("email", ValueKind.UUID, "null"),
        ("redact", ValueKind.JSONB, "redact"),
        ("partial", ValueKind.JSON, "null"),
        ("hash", ValueKind.OTHER, "null"),
        ("null", ValueKind.TEXT, "null"),
    ],
)
def test_strategy_falls_back_to_null_where_it_makes_no_sense(
    strategy: str, kind: ValueKind, applied: str
) -> None:
    assert effective_strategy(strategy, kind) == applied


# --------------------------------------------------------------------------- SQL


def test_cast_types_are_qualified_or_keywords() -> None:
    assert cast_type_sql("text", "pg_catalog") == "pg_catalog.text"
    assert cast_type_sql("date", "pg_catalog") == "pg_catalog.date"
    assert cast_type_sql("character varying(10)", "pg_catalog") == "varchar(10)"
    assert cast_type_sql("numeric(10,2)", "pg_catalog") == "numeric(10, 2)"
    assert cast_type_sql("timestamp(3) with time zone", "pg_catalog") == "timestamp(3) with time zone"
    assert cast_type_sql("text[]", "pg_catalog") == "pg_catalog.text[]"
    assert cast_type_sql("public.email_address", "public") == "public.email_address"
    assert cast_type_sql('"char"', "pg_catalog") == "pg_catalog.char"  # the one-byte type, not bpchar
    with pytest.raises(MaskingError):
        cast_type_sql("no such ) type", "pg_catalog")


@pytest.mark.parametrize("strategy", ["redact", "partial", "email", "hash", "null"])
def test_mask_sql_parses_and_keeps_the_type(strategy: str) -> None:
    column = CUSTOMERS.column("email")
    assert column is not None
    sql = mask_sql('"c"."email"', ColumnMask(strategy), column, key=KEY, redact_text="it's")
    parse_sql(f"SELECT {sql}")
    assert sql.startswith("CAST(") and sql.endswith(" AS pg_catalog.text)")
    if strategy == "redact":
        assert "'it''s'" in sql
    if strategy == "null":
        assert sql == "CAST(NULL AS pg_catalog.text)"


@pytest.mark.parametrize("name", ["code", "nick", "token", "doc", "n"])
def test_mask_sql_for_other_types(name: str) -> None:
    column = TYPED.column(name)
    assert column is not None
    sql = mask_sql(
        f'"{name}"', ColumnMask("hash" if name != "doc" else "redact"), column, key=KEY, redact_text="**"
    )
    parse_sql(f"SELECT {sql}")
    expected = {
        "code": " AS char(4))",
        "nick": " AS varchar(6))",
        "token": " AS pg_catalog.uuid)",
        "doc": " AS pg_catalog.jsonb)",
        "n": " AS bigint)",
    }
    assert sql.endswith(expected[name])


def test_mask_sql_for_an_inapplicable_type_is_a_typed_null() -> None:
    column = CUSTOMERS.column("birth_date")
    assert column is not None
    assert (
        mask_sql("x", ColumnMask("partial"), column, key=None, redact_text="*")
        == "CAST(NULL AS pg_catalog.date)"
    )


def test_hash_without_a_key_is_refused() -> None:
    column = CUSTOMERS.column("email")
    assert column is not None
    with pytest.raises(MaskingError):
        mask_sql("x", ColumnMask("hash"), column, key=None, redact_text="*")
    with pytest.raises(MaskingError):
        masker_without_key = ValueMasker(ColumnMask("hash"), TEXT, "S", -1, key=None, redact_text="*")
        del masker_without_key


# --------------------------------------------------------------------------- Python, text form


@pytest.mark.parametrize(
    ("value", "out"),
    [
        ("Ada Lovelace", "********lace"),
        ("+44 20 7946 0001", "************0001"),
        ("abcdef", "****ef"),
        ("ab", "**"),
        ("", ""),
        ("héllo wörld☃", "********rld☃"),
    ],
)
def test_partial(value: str, out: str) -> None:
    assert masked_text("partial", value, keep=4, redact_text="", key=None) == out
    assert masker("partial")(value.encode(), 0) == out.encode()


@pytest.mark.parametrize(
    ("value", "out"),
    [
        ("ada@example.com", "***@example.com"),
        ("a@b@c.org", "***@c.org"),
        ("no-at-sign", "***"),
        ("trailing@", "***@"),
    ],
)
def test_email(value: str, out: str) -> None:
    assert masker("email")(value.encode(), 0) == out.encode()


def test_redact_and_null() -> None:
    assert masker("redact")(b"123-45-6789", 0) == b"****"
    assert masker("null")(b"123-45-6789", 0) is None


def test_hash_text_is_hex_hmac_and_stable() -> None:
    out = masker("hash")(b"4242", 0)
    assert out == hmac.new(KEY.secret, b"4242", "sha256").hexdigest().encode()
    assert masker("hash")(b"4242", 1) == out  # text's binary form is its text


def test_bpchar_is_trimmed_before_and_padded_after() -> None:
    m = masker("partial", 1042, typmod=4 + 6)
    assert m(b"ab12  ", 0) == b"***2  "
    h = masker("hash", 1042, typmod=4 + 4)
    assert h(b"ab  ", 0) == hmac.new(KEY.secret, b"ab", "sha256").hexdigest()[:4].encode()


def test_varchar_and_name_are_cut_to_fit() -> None:
    assert (
        masker("hash", 1043, typmod=4 + 5)(b"x", 0)
        == hmac.new(KEY.secret, b"x", "sha256").hexdigest()[:5].encode()
    )
    assert len(masker("hash", 19)(b"x", 0) or b"") == 63


# --------------------------------------------------------------------------- Python, other types


@pytest.mark.parametrize(("oid", "fmt", "size"), [(21, "!h", 2), (23, "!i", 4), (20, "!q", 8)])
def test_hash_of_integers_text_and_binary_agree(oid: int, fmt: str, size: int) -> None:
    m = masker("hash", oid, "N")
    digest = hmac.new(KEY.secret, b"42", "sha256").digest()
    expected = int.from_bytes(digest[:size], "big", signed=True)
    assert m(b"42", 0) == str(expected).encode()
    assert m(struct.pack(fmt, 42), 1) == struct.pack(fmt, expected)


def test_hash_of_an_integer_is_the_same_across_widths() -> None:
    int4 = masker("hash", 23, "N")(b"7", 0)
    int8 = masker("hash", 20, "N")(struct.pack("!q", 7), 1)
    assert int4 is not None and int8 is not None
    digest = hmac.new(KEY.secret, b"7", "sha256").digest()
    assert int(int4) == int.from_bytes(digest[:4], "big", signed=True)
    assert struct.unpack("!q", int8)[0] == int.from_bytes(digest[:8], "big", signed=True)


def test_hash_of_uuid() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    m = masker("hash", 2950, "U")
    expected = uuid.UUID(bytes=hmac.new(KEY.secret, str(u).encode(), "sha256").digest()[:16])
    assert m(str(u).encode(), 0) == str(expected).encode()
    assert m(u.bytes, 1) == expected.bytes


def test_json_and_jsonb() -> None:
    assert masker("redact", 114, "U")(b'{"a": 1}', 0) == b'"****"'
    assert masker("redact", 3802, "U")(b'\x01{"a": 1}', 1) == b'\x01"****"'
    hashed = masker("hash", 3802, "U")(b'\x01{"a": 1}', 1)
    assert hashed == b'\x01"' + hmac.new(KEY.secret, b'{"a": 1}', "sha256").hexdigest().encode() + b'"'
    assert json.loads(masker("hash", 3802, "U")(b'{"a": 1}', 0) or b"") == json.loads(hashed[1:])
    assert masker("partial", 3802, "U")(b"{}", 0) is None


@pytest.mark.parametrize("oid", [1700, 1082, 1114, 1184, 16])
def test_other_types_become_null(oid: int) -> None:
    for strategy in ("redact", "partial", "email", "hash", "null"):
        assert masker(strategy, oid, "N")(b"\x00\x01", 1) is None


def test_undecodable_values_become_null() -> None:
    assert masker("hash", 23, "N")(b"\x00\x01", 1) is None  # wrong width
    assert masker("hash", 23, "N")(b"nope", 0) is None
    assert masker("partial")(b"\xff\xfe", 0) is None
    assert masker("hash", 3802, "U")(b"\x02{}", 1) is None
    assert masker("hash", 2950, "U")(b"short", 1) is None


def test_for_column_uses_base_type_and_typmod() -> None:
    column = col("code", 1, 1042, "character(4)", "S", 8)
    m = ValueMasker.for_column(ColumnMask("redact"), column, key=None, redact_text="REDACTED")
    assert m(b"abcd", 0) == b"REDA"


def test_plan_rejects_hash_without_key_and_bad_columns() -> None:
    with pytest.raises(MaskingError, match="key"):
        MaskPlan({("public", "t", "c"): ColumnMask("hash")})
    with pytest.raises(MaskingError, match="unknown masking strategy"):
        ColumnMask("scramble")
