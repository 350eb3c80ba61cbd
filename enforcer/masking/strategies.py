"""Mask strategies, twice: as SQL expressions for the rewriter, as Python functions for the wire.

Owns: what each strategy turns a value into, per column type, in both places -- the SQL built from
Postgres built-ins only (nothing to install upstream), every function and operator
``pg_catalog``-qualified so that no search path can substitute a user function for it, and cast
back to the column's exact type (typmod included) so that clients see the types they expect;
and the Python twins that produce the same text for a value arriving in text format, and a
type-valid value for one arriving in binary format.
Never: decides which columns to mask, or sees the SQL statement around a value.

Strategies per type (the value's base type, domains followed):

============  ==========  ==========  ============  ================  ======
type          redact      partial     email         hash              null
============  ==========  ==========  ============  ================  ======
string (S)    fixed text  ``***lace`` ``***@dom``   64 hex chars      NULL
int2/4/8      NULL        NULL        NULL          HMAC -> integer   NULL
uuid          NULL        NULL        NULL          HMAC -> uuid      NULL
json/jsonb    "fixed"     NULL        NULL          "hex" (a string)  NULL
anything else NULL        NULL        NULL          NULL              NULL
============  ==========  ==========  ============  ================  ======

A NULL stays NULL under every strategy. ``partial`` keeps the last ``min(keep, length / 3)``
characters and replaces the others with ``*`` (so short values are never shown whole). The
``hash`` of a value is HMAC-SHA256 over the UTF-8 of its text form: equal values give equal
outputs (joins and GROUP BY still line up), also across int2/int4/int8 columns.
"""

from __future__ import annotations

import enum
import json
import struct
import uuid
from collections.abc import Callable
from functools import lru_cache

from pglast import ast, parse_sql
from pglast.stream import RawStream

from enforcer.masking.catalog import Column
from enforcer.masking.plan import ColumnMask, HmacKey, MaskingError

NAME_OID = 19
INT8_OID = 20
INT2_OID = 21
INT4_OID = 23
TEXT_OID = 25
JSON_OID = 114
BPCHAR_OID = 1042
VARCHAR_OID = 1043
UUID_OID = 2950
JSONB_OID = 3802

NAMEDATALEN = 64


class ValueKind(enum.Enum):
    TEXT = "text"
    INT2 = "int2"
    INT4 = "int4"
    INT8 = "int8"
    UUID = "uuid"
    JSON = "json"
    JSONB = "jsonb"
    OTHER = "other"


_KIND_BY_OID = {
    INT2_OID: ValueKind.INT2,
    INT4_OID: ValueKind.INT4,
    INT8_OID: ValueKind.INT8,
    UUID_OID: ValueKind.UUID,
    JSON_OID: ValueKind.JSON,
    JSONB_OID: ValueKind.JSONB,
}

_APPLICABLE: dict[ValueKind, frozenset[str]] = {
    ValueKind.TEXT: frozenset({"redact", "partial", "email", "hash"}),
    ValueKind.INT2: frozenset({"hash"}),
    ValueKind.INT4: frozenset({"hash"}),
    ValueKind.INT8: frozenset({"hash"}),
    ValueKind.UUID: frozenset({"hash"}),
    ValueKind.JSON: frozenset({"redact", "hash"}),
    ValueKind.JSONB: frozenset({"redact", "hash"}),
    ValueKind.OTHER: frozenset(),
}


def value_kind(base_type_oid: int, category: str) -> ValueKind:
    if base_type_oid in _KIND_BY_OID:
        return _KIND_BY_OID[base_type_oid]
    if category == "S":
        return ValueKind.TEXT
    return ValueKind.OTHER


def column_kind(column: Column) -> ValueKind:
    return value_kind(column.base_type_oid, column.category)


def effective_strategy(strategy: str, kind: ValueKind) -> str:
    """The strategy actually applied: ``null`` where the named one makes no sense for the type."""
    return strategy if strategy in _APPLICABLE[kind] else "null"


# --------------------------------------------------------------------------- SQL


def sql_literal(text: str) -> str:
    """A standard string literal (``standard_conforming_strings`` is pinned on by the gateway)."""
    if "\0" in text:
        raise MaskingError("a masking literal cannot contain NUL")
    return "'" + text.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=1024)
def cast_type_sql(type_sql: str, type_schema: str) -> str:
    """``format_type`` text -> a type name for CAST that no search path can redirect.

    Types of ``pg_catalog`` printed as a bare identifier (``text``, ``date``, ``uuid``) get the
    schema; SQL-standard spellings (``character varying(10)``, ``timestamp with time zone``) are
    grammar keywords that always mean ``pg_catalog``; other schemas already come qualified.
    """
    try:
        stmt = parse_sql(f"SELECT CAST(NULL AS {type_sql})")[0].stmt
    except Exception as exc:  # pglast.parser.ParseError
        raise MaskingError(f"cannot use column type {type_sql!r} in a cast") from exc
    assert isinstance(stmt, ast.SelectStmt) and stmt.targetList
    target = stmt.targetList[0]
    assert isinstance(target, ast.ResTarget) and isinstance(target.val, ast.TypeCast)
    type_name = target.val.typeName
    assert type_name is not None and type_name.names
    if len(type_name.names) == 1 and type_schema == "pg_catalog":
        type_name.names = (ast.String(sval="pg_catalog"), *type_name.names)
    return str(RawStream()(type_name))


def _column_type(column: Column) -> str:
    return cast_type_sql(column.type_sql, column.type_schema)


def _hmac_sql(text_sql: str, key: HmacKey) -> str:
    """HMAC-SHA256 as lower-case hex, from built-ins: H(K^opad || H(K^ipad || m))."""
    inner = (
        f"pg_catalog.sha256(pg_catalog.byteacat(pg_catalog.decode('{key.inner_block.hex()}', 'hex'), "
        f"pg_catalog.convert_to({text_sql}, 'UTF8')))"
    )
    return (
        f"pg_catalog.encode(pg_catalog.sha256(pg_catalog.byteacat("
        f"pg_catalog.decode('{key.outer_block.hex()}', 'hex'), {inner})), 'hex')"
    )


def mask_sql(
    value_sql: str, mask: ColumnMask, column: Column, *, key: HmacKey | None, redact_text: str
) -> str:
    """SQL for the masked form of ``value_sql`` (a value of ``column``'s type), of that same type."""
    kind = column_kind(column)
    strategy = effective_strategy(mask.strategy, kind)
    target = _column_type(column)
    if strategy == "null":
        return f"CAST(NULL AS {target})"
    text = f"CAST(({value_sql}) AS pg_catalog.text)"
    if strategy == "hash":
        if key is None:
            raise MaskingError("masking strategy 'hash' needs a key")
        digest = _hmac_sql(text, key)
    if kind is ValueKind.TEXT:
        if strategy == "redact":
            body = f"CASE WHEN ({value_sql}) IS NULL THEN NULL ELSE {sql_literal(redact_text)} END"
        elif strategy == "partial":
            length = f"pg_catalog.length({text})"
            keep = f"LEAST({int(mask.keep)}, ({length} OPERATOR(pg_catalog./) 3))"
            body = (
                f"pg_catalog.textcat(pg_catalog.repeat('*', ({length} OPERATOR(pg_catalog.-) {keep})), "
                f'pg_catalog."right"({text}, {keep}))'
            )
        elif strategy == "email":
            body = (
                f"CASE WHEN ({value_sql}) IS NULL THEN NULL "
                f"WHEN (pg_catalog.strpos({text}, '@') OPERATOR(pg_catalog.>) 0) "
                f"THEN pg_catalog.textcat('***@', pg_catalog.reverse(pg_catalog.split_part("
                f"pg_catalog.reverse({text}), '@', 1))) ELSE '***' END"
            )
        else:
            body = digest
    elif kind in (ValueKind.INT8, ValueKind.INT4, ValueKind.INT2):
        bits = f"CAST(pg_catalog.textcat('x', pg_catalog.\"left\"({digest}, %d)) AS bit(%d))"
        if kind is ValueKind.INT8:
            body = f"CAST({bits % (16, 64)} AS bigint)"
        elif kind is ValueKind.INT4:
            body = f"CAST({bits % (8, 32)} AS integer)"
        else:
            body = f"CAST((CAST({bits % (8, 32)} AS integer) OPERATOR(pg_catalog.>>) 16) AS smallint)"
    elif kind is ValueKind.UUID:
        body = f'CAST(pg_catalog."left"({digest}, 32) AS pg_catalog.uuid)'
    else:  # JSON, JSONB
        if strategy == "redact":
            body = (
                f"CASE WHEN ({value_sql}) IS NULL THEN NULL ELSE {sql_literal(_json_string(redact_text))} END"
            )
        else:
            body = f"pg_catalog.textcat(pg_catalog.textcat('\"', {digest}), '\"')"
    return f"CAST({body} AS {target})"


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- Python (wire)


class UndecodableValue(Exception):
    """A value on the wire is not what its type says; it is replaced by NULL."""


def masked_text(strategy: str, text: str, *, keep: int, redact_text: str, key: HmacKey | None) -> str:
    """The masked text of a string value, exactly as the SQL of :func:`mask_sql` computes it."""
    if strategy == "redact":
        return redact_text
    if strategy == "partial":
        n = len(text)
        k = min(keep, n // 3)
        return "*" * (n - k) + text[n - k :]
    if strategy == "email":
        if "@" in text:
            return "***@" + text.rsplit("@", 1)[1]
        return "***"
    if strategy == "hash":
        if key is None:
            raise MaskingError("masking strategy 'hash' needs a key")
        return key.digest(text.encode("utf-8")).hex()
    raise ValueError(f"no text form for strategy {strategy!r}")


def _fit_text(text: str, base_type_oid: int, typmod: int) -> str:
    """What CAST(text AS the column's type) does to a string: truncate, pad, clip."""
    if base_type_oid == VARCHAR_OID and typmod >= 4:
        return text[: typmod - 4]
    if base_type_oid == BPCHAR_OID and typmod >= 4:
        n = typmod - 4
        return text[:n].ljust(n)
    if base_type_oid == NAME_OID:
        raw = text.encode("utf-8")
        if len(raw) >= NAMEDATALEN:
            raw = raw[: NAMEDATALEN - 1]
            return raw.decode("utf-8", errors="ignore")
    return text


_INT_STRUCT = {
    ValueKind.INT2: struct.Struct("!h"),
    ValueKind.INT4: struct.Struct("!i"),
    ValueKind.INT8: struct.Struct("!q"),
}


class ValueMasker:
    """Masks one result field's values as they arrive on the wire (text or binary format).

    Built for a column (its base type and typmod) and a mask. ``__call__(raw, format)`` returns
    the bytes to send instead, or ``None`` for NULL. A value that cannot be decoded becomes NULL.
    """

    __slots__ = ("_encode", "_key", "_redact", "base_type_oid", "kind", "mask", "strategy", "typmod")

    def __init__(
        self,
        mask: ColumnMask,
        base_type_oid: int,
        category: str,
        typmod: int,
        *,
        key: HmacKey | None,
        redact_text: str,
    ) -> None:
        self.mask = mask
        self.base_type_oid = base_type_oid
        self.typmod = typmod
        self.kind = value_kind(base_type_oid, category)
        self.strategy = effective_strategy(mask.strategy, self.kind)
        self._key = key
        self._redact = redact_text
        if self.strategy == "hash" and key is None:
            raise MaskingError("masking strategy 'hash' needs a key")
        self._encode: Callable[[bytes, int], bytes | None] = self._pick()

    @classmethod
    def for_column(
        cls, mask: ColumnMask, column: Column, *, key: HmacKey | None, redact_text: str
    ) -> ValueMasker:
        return cls(
            mask, column.base_type_oid, column.category, column.typmod, key=key, redact_text=redact_text
        )

    def __call__(self, raw: bytes, fmt: int) -> bytes | None:
        try:
            return self._encode(raw, fmt)
        except (UndecodableValue, UnicodeDecodeError, ValueError, struct.error):
            return None

    # -- per kind
    def _pick(self) -> Callable[[bytes, int], bytes | None]:
        if self.strategy == "null":
            return _null
        if self.kind is ValueKind.TEXT:
            return self._text
        if self.kind in _INT_STRUCT:
            return self._int
        if self.kind is ValueKind.UUID:
            return self._uuid
        return self._json

    def _source_text(self, raw: bytes, fmt: int) -> str:
        """The value's text form, as ``CAST(value AS text)`` gives it in SQL."""
        kind = self.kind
        if kind is ValueKind.TEXT:
            text = raw.decode("utf-8")
            return text.rstrip(" ") if self.base_type_oid == BPCHAR_OID else text
        if kind in _INT_STRUCT:
            if fmt == 0:
                return str(int(raw.decode("ascii")))
            return str(_INT_STRUCT[kind].unpack(raw)[0])
        if kind is ValueKind.UUID:
            return str(uuid.UUID(raw.decode("ascii")) if fmt == 0 else uuid.UUID(bytes=raw))
        if kind is ValueKind.JSONB and fmt == 1:
            if raw[:1] != b"\x01":
                raise UndecodableValue("unknown jsonb binary version")
            return raw[1:].decode("utf-8")
        return raw.decode("utf-8")

    def _digest(self, raw: bytes, fmt: int) -> bytes:
        assert self._key is not None
        return self._key.digest(self._source_text(raw, fmt).encode("utf-8"))

    def _text(self, raw: bytes, fmt: int) -> bytes | None:
        text = masked_text(
            self.strategy,
            self._source_text(raw, fmt),
            keep=self.mask.keep,
            redact_text=self._redact,
            key=self._key,
        )
        return _fit_text(text, self.base_type_oid, self.typmod).encode("utf-8")

    def _int(self, raw: bytes, fmt: int) -> bytes | None:
        digest = self._digest(raw, fmt)
        kind = self.kind
        if kind is ValueKind.INT8:
            value = int.from_bytes(digest[:8], "big", signed=True)
        elif kind is ValueKind.INT4:
            value = int.from_bytes(digest[:4], "big", signed=True)
        else:
            value = int.from_bytes(digest[:2], "big", signed=True)
        return str(value).encode("ascii") if fmt == 0 else _INT_STRUCT[kind].pack(value)

    def _uuid(self, raw: bytes, fmt: int) -> bytes | None:
        value = uuid.UUID(bytes=self._digest(raw, fmt)[:16])
        return str(value).encode("ascii") if fmt == 0 else value.bytes

    def _json(self, raw: bytes, fmt: int) -> bytes | None:
        if self.strategy == "redact":
            text = _json_string(self._redact)
        else:
            text = '"' + self._digest(raw, fmt).hex() + '"'
        body = text.encode("utf-8")
        return b"\x01" + body if self.kind is ValueKind.JSONB and fmt == 1 else body


def _null(raw: bytes, fmt: int) -> bytes | None:
    return None
