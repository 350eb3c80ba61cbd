"""The result masker on byte strings: provenance, formats, the extended protocol, COPY and errors."""

from __future__ import annotations

import hmac
import struct
from typing import Any

import pytest

from enforcer.masking import MaskPlan, ResultMasker, Rewritten, WireMasks
from enforcer.wire import (
    BindComplete,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyOutResponse,
    DataRow,
    ErrorResponse,
    FieldDescription,
    NoData,
    NoticeResponse,
    ParameterDescription,
    ParseComplete,
    ReadyForQuery,
    RowDescription,
    decode_backend,
)

from .catalog_fixture import CATALOG, KEY, PLAN

WIRE = WireMasks.build(PLAN, CATALOG)

ID = FieldDescription("id", 1001, 1, 23, 4, -1, 0)
EMAIL = FieldDescription("email", 1001, 3, 25, -1, -1, 0)
SSN = FieldDescription("ssn", 1001, 5, 25, -1, -1, 0)
BIRTH = FieldDescription("birth_date", 1001, 6, 1082, 4, -1, 0)
CARD = FieldDescription("card_last4", 1003, 5, 25, -1, -1, 0)
EXPR = FieldDescription("upper", 0, 0, 25, -1, -1, 0)
CHILD_EMAIL = FieldDescription("email", 1010, 3, 25, -1, -1, 0)
TOKEN = FieldDescription("token", 1014, 3, 2950, 16, -1, 0)
N = FieldDescription("n", 1014, 5, 20, 8, -1, 0)

REWRITTEN = Rewritten("SELECT 1", True, (), False, 1)
UNCHANGED = Rewritten("SELECT 1", False, (), False, 1)


def frames(*messages: Any) -> list[tuple[int, bytes]]:
    out = []
    for m in messages:
        raw = m.encode()
        out.append((raw[0], raw[5:]))
    return out


def run(masker: ResultMasker, *messages: Any) -> list[Any]:
    out = []
    for type_byte, payload in frames(*messages):
        for t, p in masker.transform(type_byte, payload):
            out.append(decode_backend(t, p))
    return out


def rows(messages: list[Any]) -> list[tuple[bytes | None, ...]]:
    return [m.values for m in messages if isinstance(m, DataRow)]


def with_format(field: FieldDescription, fmt: int) -> FieldDescription:
    return FieldDescription(
        field.name,
        field.table_oid,
        field.column_attr,
        field.type_oid,
        field.type_size,
        field.type_modifier,
        fmt,
    )


def test_wire_masks_cover_tables_and_their_children() -> None:
    keys = set(WIRE.columns)
    assert (1001, 3) in keys and (1001, 1) not in keys and (1003, 5) in keys
    assert (1010, 3) in keys  # an inheritance child holds the parent's data
    assert (1011, 3) in keys  # a generated column computed from a masked one


def test_text_rows_are_masked_by_provenance() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    out = run(
        m,
        RowDescription((ID, EMAIL, SSN, BIRTH, CARD, EXPR, CHILD_EMAIL)),
        DataRow(
            (b"1", b"ada@example.com", b"123-45-6789", b"1815-12-10", b"4242", b"ADA@EXAMPLE.COM", b"a@b.c")
        ),
        DataRow((b"2", None, b"987-65-4321", None, None, None, None)),
        CommandComplete("SELECT 2"),
        ReadyForQuery("I"),
    )
    card = hmac.new(KEY.secret, b"4242", "sha256").hexdigest().encode()
    assert rows(out) == [
        (b"1", b"***@example.com", b"****", None, card, b"ADA@EXAMPLE.COM", b"***@b.c"),
        (b"2", None, b"****", None, None, None, None),
    ]
    assert isinstance(out[-1], ReadyForQuery)
    assert m.masked_fields == 10


def test_binary_rows_get_type_valid_values() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    out = run(
        m,
        RowDescription(tuple(with_format(f, 1) for f in (ID, EMAIL, BIRTH, TOKEN, N))),
        DataRow(
            (
                struct.pack("!i", 1),
                b"ada@example.com",
                struct.pack("!i", -1000),
                b"\x12" * 16,
                struct.pack("!q", 5),
            )
        ),
    )
    (row,) = rows(out)
    assert row[0] == struct.pack("!i", 1)
    assert row[1] == b"***@example.com"
    assert row[2] is None
    assert row[3] is not None and len(row[3]) == 16 and row[3] != b"\x12" * 16
    digest = hmac.new(KEY.secret, b"5", "sha256").digest()
    assert row[4] == digest[:8]


def test_field_of_another_type_than_the_column_becomes_null() -> None:
    odd = FieldDescription("email", 1001, 3, 23, 4, -1, 0)
    out = run(ResultMasker(WIRE, rewritten=REWRITTEN), RowDescription((odd,)), DataRow((b"7",)))
    assert rows(out) == [(None,)]


def test_rows_without_masked_fields_pass_untouched() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    row = DataRow((b"1", b"x"))
    assert run(m, RowDescription((ID, EXPR)), row) == [RowDescription((ID, EXPR)), row]


def test_rows_without_a_description_are_withheld_until_ready() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    out = run(
        m,
        BindComplete(),
        DataRow((b"ada@example.com",)),
        DataRow((b"x",)),
        CommandComplete("SELECT 2"),
        ReadyForQuery("T"),
    )
    assert [type(x).__name__ for x in out] == ["BindComplete", "ErrorResponse", "ReadyForQuery"]
    err = out[1]
    assert err.sqlstate == "42501" and "withheld" in err.message
    assert out[2].status == "T"
    # the next cycle is judged afresh
    again = run(m, RowDescription((EMAIL,)), DataRow((b"a@b.c",)), ReadyForQuery("I"))
    assert rows(again) == [(b"***@b.c",)]


def test_row_width_mismatch_is_withheld() -> None:
    out = run(
        ResultMasker(WIRE, rewritten=REWRITTEN),
        RowDescription((ID, EMAIL)),
        DataRow((b"1",)),
        ReadyForQuery("I"),
    )
    assert isinstance(out[1], ErrorResponse)


def test_malformed_frame_is_withheld() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    m.transform(ord("T"), RowDescription((EMAIL,)).encode()[5:])
    out = m.transform(ord("D"), b"\x00\x01\x00\x00\x00\x09abc")
    assert decode_backend(*out[0]).sqlstate == "42501"
    assert m.transform(ord("C"), b"SELECT 1\x00") == []


def test_extended_protocol_statement_description_and_bind_formats() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    out = run(
        m, ParseComplete(), ParameterDescription((23,)), RowDescription((ID, EMAIL)), ReadyForQuery("I")
    )
    assert m.statement_fields == (ID, EMAIL)
    # next cycle: Bind (binary results) + Execute, no RowDescription on the wire
    m2 = ResultMasker(WIRE, rewritten=REWRITTEN)
    m2.bind([1], m.statement_fields)
    out = run(
        m2, BindComplete(), DataRow((struct.pack("!i", 1), b"ada@example.com")), CommandComplete("SELECT 1")
    )
    assert rows(out) == [(struct.pack("!i", 1), b"***@example.com")]
    assert m2.current_fields is None  # cleared at CommandComplete


def test_describe_and_bind_in_one_cycle() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    m.bind([0, 1])
    out = run(
        m,
        ParseComplete(),
        ParameterDescription(()),
        RowDescription((ID, TOKEN)),
        BindComplete(),
        DataRow((b"1", b"\x00" * 16)),
    )
    (row,) = rows(out)
    assert len(row[1] or b"") == 16


def test_portal_description_wins_over_statement_description() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    out = run(m, BindComplete(), RowDescription((with_format(SSN, 1),)), DataRow((b"123",)), NoData())
    assert rows(out) == [(b"****",)]


def test_preset_fields_for_a_portal_described_earlier() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN, fields=(EMAIL,), result_formats=[1])
    assert rows(run(m, DataRow((b"x@y.z",)))) == [(b"***@y.z",)]


def test_copy_out_passes_when_rewritten() -> None:
    m = ResultMasker(WIRE, rewritten=REWRITTEN)
    msgs = (CopyOutResponse(0, (0,)), CopyData(b"1\t***\n"), CopyDone(), CommandComplete("COPY 1"))
    assert run(m, *msgs) == list(msgs)


def test_copy_out_is_withheld_when_not_rewritten() -> None:
    m = ResultMasker(WIRE, rewritten=None)
    out = run(
        m,
        CopyOutResponse(0, (0,)),
        CopyData(b"1\tada@example.com\n"),
        CopyDone(),
        CommandComplete("COPY 1"),
        ReadyForQuery("I"),
    )
    assert [type(x).__name__ for x in out] == ["ErrorResponse", "ReadyForQuery"]
    assert "COPY" in out[0].message and b"ada" not in out[0].encode()


def test_errors_of_rewritten_reads_keep_their_text_but_lose_positions() -> None:
    err = ErrorResponse(
        (
            ("S", "ERROR"),
            ("C", "22P02"),
            ("M", 'invalid input syntax for type integer: "***@x.y"'),
            ("P", "812"),
        )
    )
    (out,) = run(ResultMasker(WIRE, rewritten=REWRITTEN), err)
    assert out.message == err.message and out.field("P") is None
    (same,) = run(ResultMasker(WIRE, rewritten=UNCHANGED), err)
    assert same == err


@pytest.mark.parametrize("rewritten", [None, Rewritten("UPDATE", True, (), True, 1)])
def test_errors_that_may_quote_real_values_are_withheld(rewritten: Rewritten | None) -> None:
    err = ErrorResponse(
        (
            ("S", "ERROR"),
            ("V", "ERROR"),
            ("C", "23514"),
            ("M", 'new row for relation "orders" violates check constraint "orders_quantity_check"'),
            ("D", "Failing row contains (1, 1, 1, 0, 4242, 2024-01-01)."),
            ("t", "orders"),
            ("n", "orders_quantity_check"),
        )
    )
    (out,) = run(ResultMasker(WIRE, rewritten=rewritten), err)
    assert out.sqlstate == "23514" and out.field("D") is None
    assert "4242" not in repr(out) and "withheld" in out.message
    assert out.field("n") == "orders_quantity_check"
    notice = NoticeResponse((("S", "NOTICE"), ("C", "00000"), ("M", "value 4242")))
    (n,) = run(ResultMasker(WIRE, rewritten=rewritten), notice)
    assert "4242" not in repr(n)


def test_wire_masks_of_a_labelled_view() -> None:
    plan = MaskPlan(
        {("public", "customer_contacts", "email"): PLAN.columns[("public", "customers", "email")]}
    )
    wire = WireMasks.build(plan, CATALOG)
    assert set(wire.columns) == {(1005, 3)}
    field = FieldDescription("email", 1005, 3, 25, -1, -1, 0)
    assert rows(run(ResultMasker(wire), RowDescription((field,)), DataRow((b"a@b.c",)))) == [(b"***@b.c",)]
