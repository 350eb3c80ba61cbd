"""Message codecs: round trips, bytes from the protocol documentation, and every way to be malformed."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest

from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationGSS,
    AuthenticationGSSContinue,
    AuthenticationKerberosV5,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    AuthenticationSSPI,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Flush,
    Framer,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
    GSSResponse,
    InvalidEncoding,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    ProtocolError,
    Query,
    ReadyForQuery,
    RowDescription,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    UnknownMessageType,
    decode_backend,
    decode_frontend,
    decode_untyped,
    frame,
    split_untyped,
)
from enforcer.wire import messages as messages_module

UNTYPED = [
    StartupMessage(),
    StartupMessage(196608, (("user", "alice"), ("database", "app"), ("application_name", "ünïcode ✓"))),
    StartupMessage(196610, (("user", "bob"), ("_pq_.some_option", ""))),
    SSLRequest(),
    GSSENCRequest(),
    CancelRequest(1234, b"\x01\x02\x03\x04"),
    CancelRequest(-5, bytes(range(256))),
]

FRONTEND = [
    Query(""),
    Query("SELECT 1;"),
    Query("SELECT 'ünïcode ✓ 🐘'"),
    Parse("", "SELECT $1", ()),
    Parse("stmt1", "SELECT $1, $2", (23, 0, 4294967295)),
    Bind("", "", (), (), ()),
    Bind("p1", "s1", (1,), (b"\x00\x00\x00\x01", None, b""), (0, 1)),
    Bind("", "s", (0, 1, 0), (b"x", b"\x00\x01", None), (1,)),
    Describe("S", "stmt"),
    Describe("P", ""),
    Execute("", 0),
    Execute("portal", 100),
    Execute("portal", -1),
    Sync(),
    Flush(),
    Close("S", "stmt"),
    Close("P", ""),
    CopyData(b""),
    CopyData(b"1\tfoo\n\x00\xff"),
    CopyDone(),
    CopyFail("client gave up"),
    FunctionCall(1598, (), (), 0),
    FunctionCall(4294967295, (1,), (b"\x00\x00\x00\x2a", None), 1),
    Terminate(),
    PasswordMessage.from_password("s3cret ✓"),
]

# b"p" messages whose meaning depends on the authentication exchange.
PASSWORD_LIKE = [
    SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"),
    SASLInitialResponse("SCRAM-SHA-256", None),
    SASLInitialResponse("SCRAM-SHA-256-PLUS", b""),
    SASLResponse(b"c=biws,r=abc,p=xyz"),
    SASLResponse(b""),
    GSSResponse(b"\x60\x82\x01\x00"),
]

BACKEND = [
    AuthenticationOk(),
    AuthenticationKerberosV5(),
    AuthenticationCleartextPassword(),
    AuthenticationMD5Password(b"\x01\x02\x03\x04"),
    AuthenticationGSS(),
    AuthenticationGSSContinue(b"\x00gss-token"),
    AuthenticationGSSContinue(b""),
    AuthenticationSSPI(),
    AuthenticationSASL(("SCRAM-SHA-256",)),
    AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")),
    AuthenticationSASL(()),
    AuthenticationSASLContinue(b"r=abc,s=c2FsdA==,i=4096"),
    AuthenticationSASLFinal(b"v=signature"),
    ParameterStatus("server_version", "17.2"),
    ParameterStatus("application_name", ""),
    BackendKeyData(4242, b"\xde\xad\xbe\xef"),
    BackendKeyData(-1, b"k" * 32),
    ReadyForQuery("I"),
    ReadyForQuery("T"),
    ReadyForQuery("E"),
    RowDescription(()),
    RowDescription(
        (
            FieldDescription("id", 16384, 1, 23, 4, -1, 0),
            FieldDescription("email ✓", 16384, 3, 25, -1, -1, 1),
            FieldDescription("?column?", 0, 0, 4294967295, -2, 2147483647, 0),
        )
    ),
    DataRow(()),
    DataRow((b"1", None, b"", b"\x00\xff" * 10)),
    CommandComplete("SELECT 1"),
    CommandComplete("INSERT 0 5"),
    EmptyQueryResponse(),
    ErrorResponse.build("42501", "permission denied for table users", detail="policy p1", hint="ask"),
    ErrorResponse((("S", "FATAL"), ("C", "08P01"), ("M", "bad"), ("X", "unknown field code"))),
    ErrorResponse(()),
    NoticeResponse.build("01000", "statement held for approval", severity="NOTICE"),
    NotificationResponse(77, "jobs", "payload ✓"),
    NotificationResponse(77, "jobs", ""),
    ParameterDescription(()),
    ParameterDescription((23, 25, 0, 4294967295)),
    NoData(),
    ParseComplete(),
    BindComplete(),
    CloseComplete(),
    PortalSuspended(),
    CopyInResponse(0, (0, 0, 0)),
    CopyOutResponse(1, (1, 1)),
    CopyOutResponse(0, ()),
    CopyBothResponse(0, ()),
    FunctionCallResponse(None),
    FunctionCallResponse(b""),
    FunctionCallResponse(b"\x00\x00\x00\x01"),
    NegotiateProtocolVersion(0, ()),
    NegotiateProtocolVersion(2, ("_pq_.foo", "_pq_.bar")),
    CopyData(b"row\n"),
    CopyDone(),
]


def _one_frame(raw: bytes) -> tuple[int, bytes]:
    framer = Framer()
    framer.feed(raw)
    result = framer.next_frame()
    assert result is not None
    type_byte, payload, whole = result
    assert whole == raw
    assert framer.next_frame() is None
    assert framer.buffered() == 0
    return type_byte, payload


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("msg", UNTYPED, ids=repr)
def test_untyped_round_trip(msg: Any) -> None:
    raw = msg.encode()
    split = split_untyped(raw)
    assert split is not None
    body, consumed = split
    assert consumed == len(raw)
    assert decode_untyped(body) == msg
    assert type(msg).decode(body) == msg


@pytest.mark.parametrize("msg", FRONTEND, ids=repr)
def test_frontend_round_trip(msg: Any) -> None:
    raw = msg.encode()
    type_byte, payload = _one_frame(raw)
    assert bytes([type_byte]) == type(msg).TYPE
    decoded = decode_frontend(type_byte, payload)
    assert decoded == msg
    assert decoded.encode() == raw


@pytest.mark.parametrize("msg", PASSWORD_LIKE, ids=repr)
def test_password_like_round_trip(msg: Any) -> None:
    raw = msg.encode()
    type_byte, payload = _one_frame(raw)
    assert type_byte == ord("p")
    generic = decode_frontend(type_byte, payload)
    assert generic == PasswordMessage(payload)
    assert type(msg).decode(generic.data) == msg


@pytest.mark.parametrize("msg", BACKEND, ids=repr)
def test_backend_round_trip(msg: Any) -> None:
    raw = msg.encode()
    type_byte, payload = _one_frame(raw)
    assert bytes([type_byte]) == type(msg).TYPE
    decoded = decode_backend(type_byte, payload)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert decoded.encode() == raw


def test_every_message_class_is_exercised() -> None:
    classes = {
        obj
        for name, obj in vars(messages_module).items()
        if isinstance(obj, type)
        and not name.startswith("_")
        and dataclasses.is_dataclass(obj)
        and hasattr(obj, "TYPE")
    }
    covered = {type(m) for m in UNTYPED + FRONTEND + PASSWORD_LIKE + BACKEND}
    assert classes - covered == set()


@pytest.mark.parametrize("msg", UNTYPED + FRONTEND + PASSWORD_LIKE + BACKEND, ids=repr)
def test_messages_are_frozen_slotted_and_hashable(msg: Any) -> None:
    assert dataclasses.is_dataclass(msg)
    assert not hasattr(msg, "__dict__")
    hash(msg)
    fields = dataclasses.fields(msg)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(msg, fields[0].name, None)


def test_same_fields_different_message_types_are_not_equal() -> None:
    pairs: list[tuple[object, object]] = [
        (ErrorResponse((("M", "x"),)), NoticeResponse((("M", "x"),))),
        (AuthenticationOk(), AuthenticationGSS()),
        (CopyInResponse(0, ()), CopyOutResponse(0, ())),
    ]
    for left, right in pairs:
        assert left != right


# --------------------------------------------------------------------------- bytes from the docs


def test_query_known_bytes() -> None:
    raw = b"Q\x00\x00\x00\x0eSELECT 1;\x00"
    assert Query("SELECT 1;").encode() == raw
    assert decode_frontend(ord("Q"), raw[5:]) == Query("SELECT 1;")


def test_startup_known_bytes() -> None:
    body = b"\x00\x03\x00\x00user\x00alice\x00database\x00app\x00\x00"
    raw = struct.pack("!i", len(body) + 4) + body
    msg = StartupMessage(196608, (("user", "alice"), ("database", "app")))
    assert msg.encode() == raw
    assert decode_untyped(body) == msg
    assert msg.major == 3
    assert msg.minor == 0


def test_ssl_gss_cancel_known_bytes() -> None:
    assert SSLRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert GSSENCRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    cancel = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x30\x39\xca\xfe\xba\xbe"
    assert CancelRequest(12345, b"\xca\xfe\xba\xbe").encode() == cancel
    assert decode_untyped(cancel[4:]) == CancelRequest(12345, b"\xca\xfe\xba\xbe")


def test_parse_bind_execute_known_bytes() -> None:
    parse = b"P\x00\x00\x00\x17s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"
    assert Parse("s1", "SELECT $1", (23,)).encode() == parse
    bind = (
        b"B\x00\x00\x00\x1a"
        b"\x00s1\x00"  # portal "", statement "s1"
        b"\x00\x01\x00\x00"  # one parameter format: text
        b"\x00\x02\x00\x00\x00\x0242\xff\xff\xff\xff"  # two parameters: "42", NULL
        b"\x00\x00"  # no result formats
    )
    assert Bind("", "s1", (0,), (b"42", None), ()).encode() == bind
    assert decode_frontend(ord("B"), bind[5:]) == Bind("", "s1", (0,), (b"42", None), ())
    assert Execute("", 0).encode() == b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
    assert Sync().encode() == b"S\x00\x00\x00\x04"


def test_backend_known_bytes() -> None:
    assert AuthenticationOk().encode() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert AuthenticationMD5Password(b"abcd").encode() == b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"
    sasl = b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00"
    assert AuthenticationSASL(("SCRAM-SHA-256",)).encode() == sasl
    assert ReadyForQuery("I").encode() == b"Z\x00\x00\x00\x05I"
    assert CommandComplete("SELECT 1").encode() == b"C\x00\x00\x00\x0dSELECT 1\x00"
    data_row = b"D\x00\x00\x00\x0f\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff"
    assert DataRow((b"1", None)).encode() == data_row
    assert decode_backend(ord("D"), data_row[5:]) == DataRow((b"1", None))


def test_row_description_as_sent_by_postgres_for_select_1() -> None:
    # Captured from PostgreSQL 16 answering "SELECT 1".
    raw = (
        b"T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17"
        b"\x00\x04\xff\xff\xff\xff\x00\x00"
    )
    expected = RowDescription((FieldDescription("?column?", 0, 0, 23, 4, -1, 0),))
    assert decode_backend(raw[0], raw[5:]) == expected
    assert expected.encode() == raw


def test_frame_helper() -> None:
    assert frame(b"Q", b"x\x00") == b"Q\x00\x00\x00\x06x\x00"
    assert frame(b"", b"\x04\xd2\x16\x2f") == SSLRequest().encode()


# --------------------------------------------------------------------------- helpers


def test_startup_get_last_occurrence_wins() -> None:
    msg = StartupMessage(params=(("user", "a"), ("database", "d"), ("user", "b")))
    assert msg.get("user") == "b"
    assert msg.get("database") == "d"
    assert msg.get("options") is None
    assert msg.get("options", "-c x=1") == "-c x=1"


def test_password_message() -> None:
    msg = PasswordMessage.from_password("pässword")
    assert msg.data == "pässword".encode() + b"\x00"
    assert msg.password() == "pässword"
    assert PasswordMessage(b"\x00").password() == ""


@pytest.mark.parametrize("data", [b"", b"secret", b"sec\x00ret\x00", b"secret\x00\x00"])
def test_password_packet_size_is_checked(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid password packet size"):
        PasswordMessage(data).password()


def test_password_invalid_utf8() -> None:
    with pytest.raises(InvalidEncoding):
        PasswordMessage(b"\xff\x00").password()


def test_password_with_nul_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="NUL"):
        PasswordMessage.from_password("a\x00b")


def test_error_response_build_and_accessors() -> None:
    err = ErrorResponse.build("42501", "denied", detail="rule r1", hint="ask an approver")
    assert err.fields == (
        ("S", "ERROR"),
        ("V", "ERROR"),
        ("C", "42501"),
        ("M", "denied"),
        ("D", "rule r1"),
        ("H", "ask an approver"),
    )
    assert (err.severity, err.sqlstate, err.message) == ("ERROR", "42501", "denied")
    assert err.field("D") == "rule r1"
    assert err.field("P") is None
    notice = NoticeResponse.build("01000", "held", severity="NOTICE")
    assert isinstance(notice, NoticeResponse)
    assert notice.severity == "NOTICE"
    assert notice.field("D") is None


def test_error_response_prefers_non_localized_severity() -> None:
    err = ErrorResponse((("S", "FEHLER"), ("V", "ERROR"), ("C", "XX000")))
    assert err.severity == "ERROR"
    assert ErrorResponse((("S", "FATAL"),)).severity == "FATAL"
    assert ErrorResponse(()).severity == ""
    assert ErrorResponse(()).sqlstate == ""
    assert ErrorResponse(()).message == ""


@pytest.mark.parametrize("sqlstate", ["", "4250", "425011", "42 01", "4250é"])
def test_error_response_build_rejects_bad_sqlstate(sqlstate: str) -> None:
    with pytest.raises(ValueError, match="SQLSTATE"):
        ErrorResponse.build(sqlstate, "x")


def test_bind_format_rules() -> None:
    assert Bind("", "", (), (b"a", b"b"), ()).param_format(1) == 0
    assert Bind("", "", (1,), (b"a", b"b"), (1,)).param_format(1) == 1
    bind = Bind("", "", (0, 1), (b"a", b"b"), (1, 0))
    assert [bind.param_format(0), bind.param_format(1)] == [0, 1]
    assert [bind.result_format(0), bind.result_format(1)] == [1, 0]
    assert Bind("", "", (), (), ()).result_format(7) == 0
    assert Bind("", "", (), (), (1,)).result_format(7) == 1


def test_bind_accepts_65535_parameters() -> None:
    # libpq and pgjdbc send up to 65535 parameters; the count field is read unsigned like the server does.
    params = tuple(None for _ in range(65535))
    msg = Bind("", "s", (), params, ())
    type_byte, payload = _one_frame(msg.encode())
    assert decode_frontend(type_byte, payload) == msg


# --------------------------------------------------------------------------- unrepresentable values


@pytest.mark.parametrize(
    "msg",
    [
        Query("SELECT 1\x00; DROP TABLE t"),
        Parse("s\x00", "SELECT 1"),
        ErrorResponse.build("42501", "denied\x00Mfake"),
        ErrorResponse((("MM", "x"),)),
        ErrorResponse((("", "x"),)),
        ErrorResponse((("\x00", "x"),)),
        ErrorResponse((("é", "x"),)),
        StartupMessage(params=(("", "x"),)),
        AuthenticationSASL(("",)),
        SASLInitialResponse("", b""),
        ReadyForQuery("X"),
        Describe("X", ""),
        Close("", ""),
        Bind("", "", (2,), (b"x",), ()),
        Bind("", "", (0, 0), (b"x",), ()),
        FunctionCall(1, (), (), 2),
        RowDescription((FieldDescription("a", format=2),)),
        CopyOutResponse(2, ()),
        CancelRequest(1, b"abc"),
        BackendKeyData(1, b"x" * 257),
        AuthenticationMD5Password(b"abc"),
        Query("\udcff"),
    ],
    ids=repr,
)
def test_encode_rejects_unrepresentable_values(msg: Any) -> None:
    with pytest.raises(ValueError):
        msg.encode()


# --------------------------------------------------------------------------- malformed input

FRONTEND_BAD = [
    # truncation and missing NUL
    ("Q", b"", "NUL"),
    ("Q", b"SELECT 1", "NUL"),
    ("P", b"s\x00SELECT 1\x00", "truncated"),
    ("P", b"s\x00SELECT 1\x00\x00", "truncated"),
    ("P", b"s\x00SELECT 1", "NUL"),
    ("B", b"\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x05ab\x00\x00", "exceeds"),
    ("B", b"\x00s\x00\x00", "truncated"),
    ("D", b"", "truncated"),
    ("D", b"S", "NUL"),
    ("E", b"portal\x00\x00\x00", "truncated"),
    ("C", b"S", "NUL"),
    ("f", b"reason", "NUL"),
    ("F", b"\x00\x00\x06", "truncated"),
    ("F", b"\x00\x00\x06\x3e\x00\x00\x00\x00", "truncated"),
    # trailing garbage
    ("Q", b"SELECT 1\x00x", "unexpected bytes"),
    ("P", b"s\x00q\x00\x00\x00\x00", "unexpected bytes"),
    ("B", b"\x00\x00\x00\x00\x00\x00\x00\x00\x00", "unexpected bytes"),
    ("D", b"Ss\x00\x00", "unexpected bytes"),
    ("E", b"\x00\x00\x00\x00\x00\x00", "unexpected bytes"),
    ("S", b"\x00", "without a body"),
    ("H", b"x", "without a body"),
    ("X", b"x", "without a body"),
    ("c", b"x", "without a body"),
    ("C", b"Pname\x00\x00", "unexpected bytes"),
    ("f", b"x\x00y", "unexpected bytes"),
    # counts that exceed the payload, and negative lengths
    ("P", b"\x00q\x00\xff\xff\x00\x00\x00\x17", "65535 type OIDs"),
    ("B", b"\x00\x00\x00\x00\xff\xff", "65535 values"),
    ("B", b"\x00\x00\xff\xff\x00\x00", "65535 format codes"),
    ("B", b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00", "invalid value length -2"),
    ("B", b"\x00\x00\x00\x00\x00\x01\x80\x00\x00\x00\x00\x00", "invalid value length"),
    ("B", b"\x00\x00\x00\x00\x00\x01\x7f\xff\xff\xff\x00\x00", "exceeds"),
    ("F", b"\x00\x00\x00\x01\x00\x00\x7f\xff\x00\x00", "32767 values"),
    # bad formats and format counts
    ("B", b"\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00", "format code 2"),
    ("B", b"\x00\x00\x00\x01\xff\xff\x00\x00\x00\x00", "format code -1"),
    ("B", b"\x00\x00\x00\x00\x00\x00\x00\x01\x00\x07", "format code 7"),
    ("B", b"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x01\xff\xff\xff\xff\x00\x00", "2 parameter formats but 1"),
    ("F", b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x02", "format code 2"),
    ("F", b"\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00", "2 argument formats but 0"),
    # bad subtypes
    ("D", b"X\x00", "subtype"),
    ("C", b"s\x00", "subtype"),
]


@pytest.mark.parametrize(("type_char", "payload", "match"), FRONTEND_BAD, ids=repr)
def test_malformed_frontend(type_char: str, payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frontend(ord(type_char), payload)


BACKEND_BAD = [
    ("R", b"", "truncated"),
    ("R", b"\x00\x00\x00", "truncated"),
    ("R", b"\x00\x00\x00\x00\x00", "unexpected bytes"),
    ("R", b"\x00\x00\x00\x03x", "unexpected bytes"),
    ("R", b"\x00\x00\x00\x04", "unknown authentication code 4"),
    ("R", b"\xff\xff\xff\xff", "unknown authentication code -1"),
    ("R", b"\x00\x00\x00\x05abc", "salt of 3 bytes"),
    ("R", b"\x00\x00\x00\x05abcde", "salt of 5 bytes"),
    ("R", b"\x00\x00\x00\x0aSCRAM-SHA-256\x00", "missing terminator"),
    ("R", b"\x00\x00\x00\x0aSCRAM-SHA-256", "NUL"),
    ("R", b"\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00x", "unexpected bytes"),
    ("S", b"name\x00", "NUL"),
    ("S", b"name\x00value\x00x", "unexpected bytes"),
    ("K", b"\x00\x00\x00\x01abc", "secret key of 3 bytes"),
    ("K", b"\x00\x00\x00\x01" + b"k" * 257, "secret key of 257 bytes"),
    ("K", b"\x00\x00", "truncated"),
    ("Z", b"", "transaction status"),
    ("Z", b"X", "transaction status"),
    ("Z", b"IT", "transaction status"),
    ("T", b"", "truncated"),
    ("T", b"\x00\x01", "1 fields announced"),
    ("T", b"\x7f\xff" + b"\x00" * 40, "32767 fields announced"),
    ("T", b"\x00\x01" + b"a" * 19, "NUL"),
    ("T", b"\x00\x01abcd\x00" + b"\x00" * 17, "truncated"),
    ("T", b"\x00\x01a\x00" + b"\x00" * 16 + b"\x00\x02", "format code 2"),
    ("T", b"\x00\x01a\x00" + b"\x00" * 18 + b"\x00", "unexpected bytes"),
    ("D", b"", "truncated"),
    ("D", b"\x00", "truncated"),
    ("D", b"\x00\x01", "1 values announced"),
    ("D", b"\xff\xff\x00\x00\x00\x00", "65535 values announced"),
    ("D", b"\x00\x01\x00\x00\x00\x05abc", "exceeds"),
    ("D", b"\x00\x01\xff\xff\xff\xfe", "invalid value length -2"),
    ("D", b"\x00\x01\x00\x00\x00\x01ab", "unexpected bytes"),
    ("D", b"\x00\x02\x00\x00\x00\x02ab\x00\x00", "truncated"),
    ("C", b"SELECT 1", "NUL"),
    ("I", b"\x00", "without a body"),
    ("E", b"", "missing terminator"),
    ("E", b"Mmessage\x00", "missing terminator"),
    ("E", b"Mmessage", "NUL"),
    ("E", b"M", "NUL"),
    ("E", b"Mx\x00\x00junk", "unexpected bytes"),
    ("E", b"\xc3x\x00\x00", "invalid field code 0xc3"),
    ("N", b"Mx\x00", "missing terminator"),
    ("A", b"\x00\x00\x00\x01chan\x00", "NUL"),
    ("A", b"\x00\x00\x00", "truncated"),
    ("t", b"\x00\x02\x00\x00\x00\x17", "2 type OIDs"),
    ("t", b"\x00\x01\x00\x00\x00\x17\x00", "unexpected bytes"),
    ("n", b"x", "without a body"),
    ("1", b"x", "without a body"),
    ("2", b"x", "without a body"),
    ("3", b"x", "without a body"),
    ("s", b"x", "without a body"),
    ("c", b"x", "without a body"),
    ("G", b"", "truncated"),
    ("G", b"\x02\x00\x00", "format code 2"),
    ("H", b"\x00\x00\x01\x00\x02", "format code 2"),
    ("H", b"\x00\x00\x02\x00\x00", "2 format codes announced"),
    ("W", b"\x00\x00\x00\x00", "unexpected bytes"),
    ("V", b"", "1 values announced"),
    ("V", b"\xff\xff\xff\xfe", "invalid value length -2"),
    ("V", b"\x00\x00\x00\x02a", "exceeds"),
    ("V", b"\xff\xff\xff\xff\x00", "unexpected bytes"),
    ("v", b"\x00\x00\x00\x00", "truncated"),
    ("v", b"\x00\x00\x00\x00\xff\xff\xff\xff", "invalid option count -1"),
    ("v", b"\x00\x00\x00\x00\x7f\xff\xff\xff", "invalid option count"),
    ("v", b"\x00\x00\x00\x00\x00\x00\x00\x02a\x00", "NUL"),
    ("v", b"\x00\x00\x00\x00\x00\x00\x00\x01a\x00b", "unexpected bytes"),
]


@pytest.mark.parametrize(("type_char", "payload", "match"), BACKEND_BAD, ids=repr)
def test_malformed_backend(type_char: str, payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_backend(ord(type_char), payload)


UNTYPED_BAD = [
    (b"", "truncated"),
    (b"\x00\x03", "truncated"),
    (b"\x00\x02\x00\x00user\x00a\x00\x00", "unsupported frontend protocol 2.0"),
    (b"\x00\x04\x00\x00\x00", "unsupported frontend protocol 4.0"),
    (b"\x04\xd2\x16\x31", "unsupported frontend protocol 1234.5681"),
    (b"\x00\x03\x00\x00", "missing terminator"),
    (b"\x00\x03\x00\x00user\x00", "missing value"),
    (b"\x00\x03\x00\x00user\x00alice", "NUL"),
    (b"\x00\x03\x00\x00user\x00alice\x00", "missing terminator"),
    (b"\x00\x03\x00\x00user\x00\x00", "missing terminator"),
    (b"\x00\x03\x00\x00\x00x", "unexpected bytes"),
    (b"\x00\x03\x00\x00user\x00a\x00\x00\x00", "unexpected bytes"),
    (b"\x04\xd2\x16\x2f\x00", "unexpected bytes"),
    (b"\x04\xd2\x16\x30\x00\x00\x00\x00", "unexpected bytes"),
    (b"\x04\xd2\x16\x2e\x00\x00\x00\x01", "secret key of 0 bytes"),
    (b"\x04\xd2\x16\x2e\x00\x00\x00\x01abc", "secret key of 3 bytes"),
    (b"\x04\xd2\x16\x2e\x00\x00\x00\x01" + b"k" * 257, "secret key of 257 bytes"),
    (b"\x04\xd2\x16\x2e\x00\x00", "truncated"),
]


@pytest.mark.parametrize(("body", "match"), UNTYPED_BAD, ids=repr)
def test_malformed_untyped(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_untyped(body)


def test_startup_accepts_any_minor_version_of_3() -> None:
    msg = decode_untyped(b"\x00\x03\x00\x02user\x00a\x00\x00")
    assert isinstance(msg, StartupMessage)
    assert (msg.major, msg.minor) == (3, 2)


def test_explicit_decode_checks_its_own_code() -> None:
    with pytest.raises(ProtocolError, match="wrong request code"):
        SSLRequest.decode(b"\x04\xd2\x16\x30")
    with pytest.raises(ProtocolError, match="wrong request code"):
        CancelRequest.decode(b"\x04\xd2\x16\x2f\x00\x00\x00\x01abcd")
    with pytest.raises(ProtocolError, match="expected 0"):
        AuthenticationOk.decode(b"\x00\x00\x00\x03")
    with pytest.raises(ProtocolError, match="expected 12"):
        AuthenticationSASLFinal.decode(b"\x00\x00\x00\x0bdata")


@pytest.mark.parametrize(
    ("decoder", "payload"),
    [
        (SASLInitialResponse.decode, b"SCRAM-SHA-256\x00"),
        (SASLInitialResponse.decode, b"SCRAM-SHA-256\x00\x00\x00\x00\x05abc"),
        (SASLInitialResponse.decode, b"SCRAM-SHA-256\x00\xff\xff\xff\xfe"),
        (SASLInitialResponse.decode, b"SCRAM-SHA-256\x00\xff\xff\xff\xffx"),
        (SASLInitialResponse.decode, b"SCRAM-SHA-256"),
        (SASLInitialResponse.decode, b"\x00\x00\x00\x00\x00"),
    ],
    ids=repr,
)
def test_malformed_sasl_initial_response(decoder: Any, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decoder(payload)


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("type_char", "payload"),
    [
        ("Q", b"SELECT '\xc3\x28'\x00"),
        ("Q", b"SELECT '\xed\xa0\x80'\x00"),  # UTF-8 encoded surrogate, refused by Postgres too
        ("Q", b"SELECT '\xc0\xaf'\x00"),  # overlong '/'
        ("Q", b"\xff\x00"),
        ("P", b"\xff\x00SELECT 1\x00\x00\x00"),
        ("B", b"\xe2\x82\x00s\x00\x00\x00\x00\x00\x00\x00"),
        ("f", b"\x80\x00"),
    ],
    ids=repr,
)
def test_invalid_utf8_frontend(type_char: str, payload: bytes) -> None:
    with pytest.raises(InvalidEncoding) as excinfo:
        decode_frontend(ord(type_char), payload)
    assert excinfo.value.sqlstate == "22021"
    assert 'invalid byte sequence for encoding "UTF8"' in str(excinfo.value)


def test_invalid_utf8_reports_the_bad_bytes() -> None:
    with pytest.raises(InvalidEncoding, match="0xc3"):
        decode_frontend(ord("Q"), b"a\xc3\x28\x00")


@pytest.mark.parametrize(
    ("type_char", "payload"),
    [
        ("S", b"name\x00\xff\x00"),
        ("C", b"\xfe\x00"),
        ("E", b"M\xff\x00\x00"),
        ("T", b"\x00\x01\xff\x00" + b"\x00" * 18),
        ("A", b"\x00\x00\x00\x01\xff\x00\x00"),
        ("R", b"\x00\x00\x00\x0a\xff\x00\x00"),
    ],
    ids=repr,
)
def test_invalid_utf8_backend(type_char: str, payload: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        decode_backend(ord(type_char), payload)


def test_invalid_utf8_in_startup_packet() -> None:
    with pytest.raises(InvalidEncoding):
        decode_untyped(b"\x00\x03\x00\x00user\x00\xff\x00\x00")


def test_sqlstates() -> None:
    assert ProtocolError.sqlstate == "08P01"
    assert UnknownMessageType.sqlstate == "08P01"
    assert InvalidEncoding.sqlstate == "22021"
    assert issubclass(InvalidEncoding, ProtocolError)


# --------------------------------------------------------------------------- unknown types

FRONTEND_TYPES = set(b"QPBDESHCdcfFXp")
BACKEND_TYPES = set(b"RSKZTDCIENAtn123sGHWVvdc")


@pytest.mark.parametrize("type_byte", sorted(set(range(256)) - FRONTEND_TYPES))
def test_unknown_frontend_type(type_byte: int) -> None:
    with pytest.raises(UnknownMessageType, match="invalid frontend message type"):
        decode_frontend(type_byte, b"")


@pytest.mark.parametrize("type_byte", sorted(set(range(256)) - BACKEND_TYPES))
def test_unknown_backend_type(type_byte: int) -> None:
    with pytest.raises(UnknownMessageType, match="invalid backend message type"):
        decode_backend(type_byte, b"")


def test_unknown_type_message_names_the_byte() -> None:
    with pytest.raises(UnknownMessageType) as excinfo:
        decode_frontend(ord("z"), b"")
    assert str(excinfo.value) == "invalid frontend message type 'z'"
    # Backend-only types are unknown from a client, and the reverse.
    with pytest.raises(UnknownMessageType):
        decode_frontend(ord("Z"), b"I")
    with pytest.raises(UnknownMessageType):
        decode_backend(ord("Q"), b"SELECT 1\x00")
    with pytest.raises(UnknownMessageType, match="300"):
        decode_backend(300, b"")


def test_bind_head_reads_the_names_like_postgres_and_defers_parameters() -> None:
    from enforcer.wire import Bind, BindHead

    bind = Bind("portal-1", "stmt ☃", (1,), (b"\x00\x01", None), (0,))
    head = BindHead.decode(bind.encode()[5:])
    assert (head.portal, head.statement) == ("portal-1", "stmt ☃")
    assert head.full() == bind
    with pytest.raises(ProtocolError):
        BindHead.decode(b"no-terminator")
    broken = BindHead.decode(b"p\x00s\x00\x00\x05")  # names fine, parameters truncated
    with pytest.raises(ProtocolError):
        broken.full()
