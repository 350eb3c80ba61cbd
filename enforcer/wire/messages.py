"""Codecs for Postgres v3 protocol messages (3.0 and 3.2).

Owns: one frozen dataclass per message, its ``encode()`` to a complete frame
and its ``decode(payload)`` from a frame body, plus dispatch by type byte.
Never: performs I/O, keeps connection state, or trusts a length or count field.

Every ``decode`` raises :class:`~enforcer.wire.errors.ProtocolError` (or a
subclass) on any malformation, and checks a count against the remaining bytes
before allocating for it. Strings are UTF-8; invalid UTF-8 raises
:class:`~enforcer.wire.errors.InvalidEncoding` (SQLSTATE 22021).

``encode`` assumes field values the protocol can carry: it raises ValueError
for strings containing NUL (they would end the field early and let the rest be
read as further fields) and for values outside a field's domain, and
``struct.error`` for integers too wide for their field.

16-bit counts (parameters, formats, fields, columns) are read unsigned, as the
server does (``pq_getmsgint(msg, 2)``): libpq and pgjdbc send up to 65535
parameters, which a signed reading would refuse.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct
from typing import ClassVar, Self, TypeAlias

from enforcer.wire.errors import InvalidEncoding, ProtocolError, UnknownMessageType

__all__ = [
    "CANCEL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "PROTOCOL_3_0",
    "SSL_REQUEST_CODE",
    "AuthenticationCleartextPassword",
    "AuthenticationGSS",
    "AuthenticationGSSContinue",
    "AuthenticationKerberosV5",
    "AuthenticationMD5Password",
    "AuthenticationMessage",
    "AuthenticationOk",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "AuthenticationSSPI",
    "BackendKeyData",
    "BackendMessage",
    "Bind",
    "BindComplete",
    "CancelRequest",
    "Close",
    "CloseComplete",
    "CommandComplete",
    "CopyBothResponse",
    "CopyData",
    "CopyDone",
    "CopyFail",
    "CopyInResponse",
    "CopyOutResponse",
    "DataRow",
    "Describe",
    "EmptyQueryResponse",
    "ErrorResponse",
    "Execute",
    "FieldDescription",
    "Flush",
    "FrontendMessage",
    "FunctionCall",
    "FunctionCallResponse",
    "GSSENCRequest",
    "GSSResponse",
    "NegotiateProtocolVersion",
    "NoData",
    "NoticeResponse",
    "NotificationResponse",
    "ParameterDescription",
    "ParameterStatus",
    "Parse",
    "ParseComplete",
    "PasswordMessage",
    "PortalSuspended",
    "Query",
    "ReadyForQuery",
    "RowDescription",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
    "UntypedMessage",
    "decode_backend",
    "decode_frontend",
    "decode_untyped",
    "frame",
]

_I16 = Struct("!h")
_U16 = Struct("!H")
_I32 = Struct("!i")
_U32 = Struct("!I")
_I32_PAIR = Struct("!ii")
#: RowDescription per-field tail: table oid, column attnum, type oid, typlen, typmod, format.
_FIELD = Struct("!IhIhih")

_NULL_LENGTH = b"\xff\xff\xff\xff"
_FORMATS = (0, 1)

#: Protocol 3.0 sends a 4-byte cancel key; 3.2 allows up to 256 bytes.
_MIN_SECRET_KEY = 4
_MAX_SECRET_KEY = 256

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


# --------------------------------------------------------------------------- reading helpers


def _fail(what: str, problem: str) -> ProtocolError:
    return ProtocolError(f"invalid {what} message: {problem}")


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = " ".join(f"0x{b:02x}" for b in raw[exc.start : exc.end])
        raise InvalidEncoding(f'invalid byte sequence for encoding "UTF8": {bad}') from None


def _cstr(buf: bytes, pos: int, what: str) -> tuple[str, int]:
    """Read a NUL-terminated UTF-8 string at ``pos``; return it and the offset after the NUL."""
    end = buf.find(b"\0", pos)
    if end < 0:
        raise _fail(what, "string is not NUL-terminated")
    return _utf8(buf[pos:end]), end + 1


def _i16(buf: bytes, pos: int, what: str) -> int:
    if len(buf) - pos < 2:
        raise _fail(what, "truncated")
    value: int = _I16.unpack_from(buf, pos)[0]
    return value


def _u16(buf: bytes, pos: int, what: str) -> int:
    if len(buf) - pos < 2:
        raise _fail(what, "truncated")
    value: int = _U16.unpack_from(buf, pos)[0]
    return value


def _i32(buf: bytes, pos: int, what: str) -> int:
    if len(buf) - pos < 4:
        raise _fail(what, "truncated")
    value: int = _I32.unpack_from(buf, pos)[0]
    return value


def _u32(buf: bytes, pos: int, what: str) -> int:
    if len(buf) - pos < 4:
        raise _fail(what, "truncated")
    value: int = _U32.unpack_from(buf, pos)[0]
    return value


def _end(buf: bytes, pos: int, what: str) -> None:
    if pos != len(buf):
        raise _fail(what, f"{len(buf) - pos} unexpected bytes after the end")


def _check_formats(formats: tuple[int, ...], what: str) -> None:
    for code in formats:
        if code != 0 and code != 1:
            raise _fail(what, f"unsupported format code {code}")


def _formats(buf: bytes, pos: int, what: str) -> tuple[tuple[int, ...], int]:
    """Read an int16 count followed by that many int16 format codes (each 0 or 1)."""
    count = _u16(buf, pos, what)
    pos += 2
    if count * 2 > len(buf) - pos:
        raise _fail(what, f"{count} format codes announced but only {len(buf) - pos} bytes remain")
    formats: tuple[int, ...] = struct.unpack_from(f"!{count}h", buf, pos)
    _check_formats(formats, what)
    return formats, pos + count * 2


def _oids(buf: bytes, pos: int, count: int, what: str) -> tuple[tuple[int, ...], int]:
    if count * 4 > len(buf) - pos:
        raise _fail(what, f"{count} type OIDs announced but only {len(buf) - pos} bytes remain")
    oids: tuple[int, ...] = struct.unpack_from(f"!{count}I", buf, pos)
    return oids, pos + count * 4


def _values(buf: bytes, pos: int, count: int, what: str) -> tuple[tuple[bytes | None, ...], int]:
    """Read ``count`` int32-length-prefixed values; length -1 is NULL."""
    n = len(buf)
    if count * 4 > n - pos:
        raise _fail(what, f"{count} values announced but only {n - pos} bytes remain")
    unpack = _I32.unpack_from
    values: list[bytes | None] = []
    append = values.append
    for _ in range(count):
        if n - pos < 4:
            raise _fail(what, "truncated")
        length: int = unpack(buf, pos)[0]
        pos += 4
        if length < 0:
            if length != -1:
                raise _fail(what, f"invalid value length {length}")
            append(None)
            continue
        end = pos + length
        if end > n:
            raise _fail(what, f"value length {length} exceeds the remaining {n - pos} bytes")
        append(buf[pos:end])
        pos = end
    return tuple(values), pos


def _empty(buf: bytes, what: str) -> None:
    if buf:
        raise _fail(what, f"{len(buf)} unexpected bytes in a message without a body")


# --------------------------------------------------------------------------- writing helpers


def frame(type_byte: bytes, body: bytes) -> bytes:
    """Return a complete frame: ``type_byte`` (b"" for untyped) + int32 length + ``body``."""
    return type_byte + _I32.pack(len(body) + 4) + body


def _cstr_bytes(value: str) -> bytes:
    if "\0" in value:
        raise ValueError(f"string field contains a NUL character: {value!r}")
    return value.encode("utf-8") + b"\0"


def _name_bytes(value: str, what: str) -> bytes:
    """A string that must also be non-empty, because an empty one would read as a list terminator."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    return _cstr_bytes(value)


def _pack_formats(formats: tuple[int, ...]) -> bytes:
    for code in formats:
        if code != 0 and code != 1:
            raise ValueError(f"unsupported format code {code}")
    return struct.pack(f"!H{len(formats)}h", len(formats), *formats)


def _pack_values(out: bytearray, values: tuple[bytes | None, ...]) -> None:
    pack = _I32.pack
    for value in values:
        if value is None:
            out += _NULL_LENGTH
        else:
            out += pack(len(value))
            out += value


def _finish(out: bytearray) -> bytes:
    """Patch the length word of a typed frame started as ``TYPE + 4 placeholder bytes``."""
    _I32.pack_into(out, 1, len(out) - 1)
    return bytes(out)


def _kind(kind: str) -> bytes:
    if kind != "S" and kind != "P":
        raise ValueError(f"kind must be 'S' or 'P', not {kind!r}")
    return kind.encode("ascii")


# =========================================================================== untyped (startup phase)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The first packet of a session: protocol version and connection parameters."""

    TYPE: ClassVar[bytes] = b""

    protocol: int = PROTOCOL_3_0
    params: tuple[tuple[str, str], ...] = ()

    @property
    def major(self) -> int:
        return self.protocol >> 16

    @property
    def minor(self) -> int:
        return self.protocol & 0xFFFF

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of parameter ``name``; the last occurrence wins, as in the server."""
        for key, value in reversed(self.params):
            if key == name:
                return value
        return default

    def encode(self) -> bytes:
        out = bytearray(4)
        out += _I32.pack(self.protocol)
        for name, value in self.params:
            out += _name_bytes(name, "startup parameter name")
            out += _cstr_bytes(value)
        out += b"\0"
        _I32.pack_into(out, 0, len(out))
        return bytes(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "startup packet"
        protocol = _i32(payload, 0, what)
        if protocol >> 16 != 3:
            raise ProtocolError(
                f"unsupported frontend protocol {protocol >> 16}.{protocol & 0xFFFF}: "
                "server supports 3.0 to 3.2"
            )
        params: list[tuple[str, str]] = []
        pos = 4
        n = len(payload)
        while True:
            if pos >= n:
                raise _fail(what, "missing terminator")
            if payload[pos] == 0:
                pos += 1
                break
            name, pos = _cstr(payload, pos, what)
            if pos >= n:
                raise _fail(what, f"missing value for parameter {name!r}")
            value, pos = _cstr(payload, pos, what)
            params.append((name, value))
        _end(payload, pos, what)
        return cls(protocol, tuple(params))


@dataclass(frozen=True, slots=True)
class SSLRequest:
    TYPE: ClassVar[bytes] = b""
    CODE: ClassVar[int] = SSL_REQUEST_CODE

    def encode(self) -> bytes:
        return _I32_PAIR.pack(8, self.CODE)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _check_request_code(payload, cls.CODE, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    TYPE: ClassVar[bytes] = b""
    CODE: ClassVar[int] = GSSENC_REQUEST_CODE

    def encode(self) -> bytes:
        return _I32_PAIR.pack(8, self.CODE)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _check_request_code(payload, cls.CODE, cls.__name__)
        return cls()


def _check_request_code(payload: bytes, code: int, what: str) -> None:
    if _i32(payload, 0, what) != code:
        raise _fail(what, "wrong request code")
    _end(payload, 4, what)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    TYPE: ClassVar[bytes] = b""
    CODE: ClassVar[int] = CANCEL_REQUEST_CODE

    process_id: int
    secret_key: bytes

    def encode(self) -> bytes:
        _check_secret_key(self.secret_key)
        header = _I32.pack(12 + len(self.secret_key)) + _I32_PAIR.pack(self.CODE, self.process_id)
        return header + self.secret_key

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        if _i32(payload, 0, what) != cls.CODE:
            raise _fail(what, "wrong request code")
        process_id = _i32(payload, 4, what)
        key = payload[8:]
        if not _MIN_SECRET_KEY <= len(key) <= _MAX_SECRET_KEY:
            raise _fail(what, f"secret key of {len(key)} bytes (expected 4 to 256)")
        return cls(process_id, key)


def _check_secret_key(key: bytes) -> None:
    if not _MIN_SECRET_KEY <= len(key) <= _MAX_SECRET_KEY:
        raise ValueError(f"secret key must be 4 to 256 bytes, not {len(key)}")


UntypedMessage: TypeAlias = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def decode_untyped(body: bytes) -> UntypedMessage:
    """Decode a startup-phase packet body (everything after its int32 length)."""
    code = _i32(body, 0, "startup packet")
    if code == SSL_REQUEST_CODE:
        return SSLRequest.decode(body)
    if code == GSSENC_REQUEST_CODE:
        return GSSENCRequest.decode(body)
    if code == CANCEL_REQUEST_CODE:
        return CancelRequest.decode(body)
    return StartupMessage.decode(body)


# =========================================================================== frontend (typed)


@dataclass(frozen=True, slots=True)
class Query:
    TYPE: ClassVar[bytes] = b"Q"

    sql: str

    def encode(self) -> bytes:
        body = _cstr_bytes(self.sql)
        return b"Q" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        sql, pos = _cstr(payload, 0, "Query")
        _end(payload, pos, "Query")
        return cls(sql)


@dataclass(frozen=True, slots=True)
class Parse:
    TYPE: ClassVar[bytes] = b"P"

    name: str
    query: str
    param_types: tuple[int, ...] = ()

    def encode(self) -> bytes:
        out = bytearray(b"P\0\0\0\0")
        out += _cstr_bytes(self.name)
        out += _cstr_bytes(self.query)
        n = len(self.param_types)
        out += struct.pack(f"!H{n}I", n, *self.param_types)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        name, pos = _cstr(payload, 0, "Parse")
        query, pos = _cstr(payload, pos, "Parse")
        count = _u16(payload, pos, "Parse")
        param_types, pos = _oids(payload, pos + 2, count, "Parse")
        _end(payload, pos, "Parse")
        return cls(name, query, param_types)


@dataclass(frozen=True, slots=True)
class Bind:
    TYPE: ClassVar[bytes] = b"B"

    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def param_format(self, index: int) -> int:
        """Format code (0 text, 1 binary) of parameter ``index``, applying the 0/1/N rule."""
        return _format_at(self.param_formats, index)

    def result_format(self, column: int) -> int:
        """Format code requested for result ``column``, applying the 0/1/N rule."""
        return _format_at(self.result_formats, column)

    def encode(self) -> bytes:
        if len(self.param_formats) > 1 and len(self.param_formats) != len(self.params):
            raise ValueError(f"{len(self.param_formats)} parameter formats for {len(self.params)} parameters")
        out = bytearray(b"B\0\0\0\0")
        out += _cstr_bytes(self.portal)
        out += _cstr_bytes(self.statement)
        out += _pack_formats(self.param_formats)
        out += _U16.pack(len(self.params))
        _pack_values(out, self.params)
        out += _pack_formats(self.result_formats)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        portal, pos = _cstr(payload, 0, "Bind")
        statement, pos = _cstr(payload, pos, "Bind")
        param_formats, pos = _formats(payload, pos, "Bind")
        count = _u16(payload, pos, "Bind")
        params, pos = _values(payload, pos + 2, count, "Bind")
        result_formats, pos = _formats(payload, pos, "Bind")
        _end(payload, pos, "Bind")
        if len(param_formats) > 1 and len(param_formats) != count:
            raise _fail("Bind", f"{len(param_formats)} parameter formats but {count} parameters")
        return cls(portal, statement, param_formats, params, result_formats)


@dataclass(frozen=True, slots=True)
class BindHead:
    """The portal and statement names of a Bind, with its parameters left undecoded.

    The data path needs only the names to check a Bind against the decision taken at
    Parse; decoding every parameter of every execution would cost more than the rest
    of the relay. The names are read exactly as Postgres reads them (the first two
    NUL-terminated strings); :meth:`full` decodes and validates the whole message.
    It is a view for decoding only, so it has no ``TYPE`` and no ``encode``.
    """

    portal: str
    statement: str
    payload: bytes

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        portal, pos = _cstr(payload, 0, "Bind")
        statement, _ = _cstr(payload, pos, "Bind")
        return cls(portal, statement, payload)

    def full(self) -> Bind:
        return Bind.decode(self.payload)


def _format_at(formats: tuple[int, ...], index: int) -> int:
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[index]


@dataclass(frozen=True, slots=True)
class Describe:
    TYPE: ClassVar[bytes] = b"D"

    kind: str  # 'S' prepared statement, 'P' portal
    name: str = ""

    def encode(self) -> bytes:
        body = _kind(self.kind) + _cstr_bytes(self.name)
        return b"D" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        kind, name = _kind_and_name(payload, cls.__name__)
        return cls(kind, name)


@dataclass(frozen=True, slots=True)
class Close:
    TYPE: ClassVar[bytes] = b"C"

    kind: str  # 'S' prepared statement, 'P' portal
    name: str = ""

    def encode(self) -> bytes:
        body = _kind(self.kind) + _cstr_bytes(self.name)
        return b"C" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        kind, name = _kind_and_name(payload, cls.__name__)
        return cls(kind, name)


def _kind_and_name(payload: bytes, what: str) -> tuple[str, str]:
    if not payload:
        raise _fail(what, "truncated")
    kind = payload[0]
    if kind != 0x53 and kind != 0x50:  # 'S', 'P'
        raise _fail(what, f"invalid subtype {chr(kind)!r}")
    name, pos = _cstr(payload, 1, what)
    _end(payload, pos, what)
    return chr(kind), name


@dataclass(frozen=True, slots=True)
class Execute:
    TYPE: ClassVar[bytes] = b"E"

    portal: str = ""
    max_rows: int = 0  # 0 (or negative) means no limit

    def encode(self) -> bytes:
        body = _cstr_bytes(self.portal) + _I32.pack(self.max_rows)
        return b"E" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        portal, pos = _cstr(payload, 0, "Execute")
        max_rows = _i32(payload, pos, "Execute")
        _end(payload, pos + 4, "Execute")
        return cls(portal, max_rows)


@dataclass(frozen=True, slots=True)
class Sync:
    TYPE: ClassVar[bytes] = b"S"

    def encode(self) -> bytes:
        return b"S\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class Flush:
    TYPE: ClassVar[bytes] = b"H"

    def encode(self) -> bytes:
        return b"H\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class Terminate:
    TYPE: ClassVar[bytes] = b"X"

    def encode(self) -> bytes:
        return b"X\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class CopyData:
    """COPY data, in either direction."""

    TYPE: ClassVar[bytes] = b"d"

    data: bytes

    def encode(self) -> bytes:
        return b"d" + _I32.pack(len(self.data) + 4) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class CopyDone:
    """End of COPY data, in either direction."""

    TYPE: ClassVar[bytes] = b"c"

    def encode(self) -> bytes:
        return b"c\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class CopyFail:
    TYPE: ClassVar[bytes] = b"f"

    message: str

    def encode(self) -> bytes:
        body = _cstr_bytes(self.message)
        return b"f" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        message, pos = _cstr(payload, 0, "CopyFail")
        _end(payload, pos, "CopyFail")
        return cls(message)


@dataclass(frozen=True, slots=True)
class FunctionCall:
    TYPE: ClassVar[bytes] = b"F"

    oid: int
    arg_formats: tuple[int, ...] = ()
    args: tuple[bytes | None, ...] = ()
    result_format: int = 0

    def encode(self) -> bytes:
        if self.result_format not in _FORMATS:
            raise ValueError(f"unsupported format code {self.result_format}")
        out = bytearray(b"F\0\0\0\0")
        out += _U32.pack(self.oid)
        out += _pack_formats(self.arg_formats)
        out += _U16.pack(len(self.args))
        _pack_values(out, self.args)
        out += _I16.pack(self.result_format)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "FunctionCall"
        oid = _u32(payload, 0, what)
        arg_formats, pos = _formats(payload, 4, what)
        count = _u16(payload, pos, what)
        args, pos = _values(payload, pos + 2, count, what)
        result_format = _i16(payload, pos, what)
        _end(payload, pos + 2, what)
        if result_format not in _FORMATS:
            raise _fail(what, f"unsupported format code {result_format}")
        if len(arg_formats) > 1 and len(arg_formats) != count:
            raise _fail(what, f"{len(arg_formats)} argument formats but {count} arguments")
        return cls(oid, arg_formats, args, result_format)


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """Any b"p" message, undecoded: its meaning depends on the authentication exchange.

    Use :meth:`password` for a cleartext/MD5 password, or decode ``data`` explicitly
    with :meth:`SASLInitialResponse.decode`, :meth:`SASLResponse.decode` or
    :meth:`GSSResponse.decode`.
    """

    TYPE: ClassVar[bytes] = b"p"

    data: bytes

    @classmethod
    def from_password(cls, pw: str) -> Self:
        return cls(_cstr_bytes(pw))

    def password(self) -> str:
        """The password as sent in answer to AuthenticationCleartextPassword / MD5Password."""
        data = self.data
        if not data or data.find(b"\0") != len(data) - 1:
            raise ProtocolError("invalid password packet size")
        return _utf8(data[:-1])

    def encode(self) -> bytes:
        return b"p" + _I32.pack(len(self.data) + 4) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    TYPE: ClassVar[bytes] = b"p"

    mechanism: str
    data: bytes | None = None  # None: the mechanism sends no initial response

    def encode(self) -> bytes:
        out = bytearray(b"p\0\0\0\0")
        out += _name_bytes(self.mechanism, "SASL mechanism")
        _pack_values(out, (self.data,))
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "SASLInitialResponse"
        mechanism, pos = _cstr(payload, 0, what)
        if not mechanism:
            raise _fail(what, "empty mechanism name")
        (data,), pos = _values(payload, pos, 1, what)
        _end(payload, pos, what)
        return cls(mechanism, data)


@dataclass(frozen=True, slots=True)
class SASLResponse:
    TYPE: ClassVar[bytes] = b"p"

    data: bytes

    def encode(self) -> bytes:
        return b"p" + _I32.pack(len(self.data) + 4) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class GSSResponse:
    TYPE: ClassVar[bytes] = b"p"

    data: bytes

    def encode(self) -> bytes:
        return b"p" + _I32.pack(len(self.data) + 4) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(bytes(payload))


# =========================================================================== backend


def _auth_code(payload: bytes, code: int, what: str) -> None:
    actual = _i32(payload, 0, what)
    if actual != code:
        raise _fail(what, f"authentication code {actual}, expected {code}")


@dataclass(frozen=True, slots=True)
class _AuthenticationBare:
    """An authentication request that carries nothing but its code."""

    TYPE: ClassVar[bytes] = b"R"
    CODE: ClassVar[int]

    def encode(self) -> bytes:
        return b"R\0\0\0\x08" + _I32.pack(self.CODE)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _auth_code(payload, cls.CODE, cls.__name__)
        _end(payload, 4, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class _AuthenticationData:
    """An authentication request whose remainder is opaque mechanism data."""

    TYPE: ClassVar[bytes] = b"R"
    CODE: ClassVar[int]

    data: bytes

    def encode(self) -> bytes:
        return b"R" + _I32_PAIR.pack(len(self.data) + 8, self.CODE) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _auth_code(payload, cls.CODE, cls.__name__)
        return cls(payload[4:])


@dataclass(frozen=True, slots=True)
class AuthenticationOk(_AuthenticationBare):
    CODE: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class AuthenticationKerberosV5(_AuthenticationBare):
    CODE: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(_AuthenticationBare):
    CODE: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password:
    TYPE: ClassVar[bytes] = b"R"
    CODE: ClassVar[int] = 5

    salt: bytes

    def encode(self) -> bytes:
        if len(self.salt) != 4:
            raise ValueError(f"MD5 salt must be 4 bytes, not {len(self.salt)}")
        return b"R\0\0\0\x0c\0\0\0\x05" + self.salt

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        _auth_code(payload, cls.CODE, what)
        if len(payload) != 8:
            raise _fail(what, f"salt of {len(payload) - 4} bytes (expected 4)")
        return cls(payload[4:])


@dataclass(frozen=True, slots=True)
class AuthenticationGSS(_AuthenticationBare):
    CODE: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class AuthenticationGSSContinue(_AuthenticationData):
    CODE: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class AuthenticationSSPI(_AuthenticationBare):
    CODE: ClassVar[int] = 9


@dataclass(frozen=True, slots=True)
class AuthenticationSASL:
    TYPE: ClassVar[bytes] = b"R"
    CODE: ClassVar[int] = 10

    mechanisms: tuple[str, ...]

    def encode(self) -> bytes:
        out = bytearray(b"R\0\0\0\0")
        out += _I32.pack(self.CODE)
        for mechanism in self.mechanisms:
            out += _name_bytes(mechanism, "SASL mechanism")
        out += b"\0"
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        _auth_code(payload, cls.CODE, what)
        mechanisms: list[str] = []
        pos = 4
        n = len(payload)
        while True:
            if pos >= n:
                raise _fail(what, "missing terminator")
            if payload[pos] == 0:
                pos += 1
                break
            mechanism, pos = _cstr(payload, pos, what)
            mechanisms.append(mechanism)
        _end(payload, pos, what)
        return cls(tuple(mechanisms))


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(_AuthenticationData):
    CODE: ClassVar[int] = 11


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(_AuthenticationData):
    CODE: ClassVar[int] = 12


AuthenticationMessage: TypeAlias = (
    AuthenticationOk
    | AuthenticationKerberosV5
    | AuthenticationCleartextPassword
    | AuthenticationMD5Password
    | AuthenticationGSS
    | AuthenticationGSSContinue
    | AuthenticationSSPI
    | AuthenticationSASL
    | AuthenticationSASLContinue
    | AuthenticationSASLFinal
)

_AUTHENTICATION: dict[int, Callable[[bytes], AuthenticationMessage]] = {
    cls.CODE: cls.decode
    for cls in (
        AuthenticationOk,
        AuthenticationKerberosV5,
        AuthenticationCleartextPassword,
        AuthenticationMD5Password,
        AuthenticationGSS,
        AuthenticationGSSContinue,
        AuthenticationSSPI,
        AuthenticationSASL,
        AuthenticationSASLContinue,
        AuthenticationSASLFinal,
    )
}


def _decode_authentication(payload: bytes) -> AuthenticationMessage:
    code = _i32(payload, 0, "Authentication")
    decoder = _AUTHENTICATION.get(code)
    if decoder is None:
        raise _fail("Authentication", f"unknown authentication code {code}")
    return decoder(payload)


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    TYPE: ClassVar[bytes] = b"S"

    name: str
    value: str

    def encode(self) -> bytes:
        body = _cstr_bytes(self.name) + _cstr_bytes(self.value)
        return b"S" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        name, pos = _cstr(payload, 0, "ParameterStatus")
        value, pos = _cstr(payload, pos, "ParameterStatus")
        _end(payload, pos, "ParameterStatus")
        return cls(name, value)


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    TYPE: ClassVar[bytes] = b"K"

    process_id: int
    secret_key: bytes

    def encode(self) -> bytes:
        _check_secret_key(self.secret_key)
        return b"K" + _I32_PAIR.pack(len(self.secret_key) + 8, self.process_id) + self.secret_key

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        process_id = _i32(payload, 0, what)
        key = payload[4:]
        if not _MIN_SECRET_KEY <= len(key) <= _MAX_SECRET_KEY:
            raise _fail(what, f"secret key of {len(key)} bytes (expected 4 to 256)")
        return cls(process_id, key)


_READY_FRAMES = {status: b"Z\0\0\0\x05" + status.encode("ascii") for status in "ITE"}


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    TYPE: ClassVar[bytes] = b"Z"

    status: str  # 'I' idle, 'T' in a transaction, 'E' in a failed transaction

    def encode(self) -> bytes:
        encoded = _READY_FRAMES.get(self.status)
        if encoded is None:
            raise ValueError(f"transaction status must be 'I', 'T' or 'E', not {self.status!r}")
        return encoded

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        if len(payload) != 1 or payload not in b"ITE":
            raise _fail("ReadyForQuery", f"invalid transaction status {payload!r}")
        return cls(chr(payload[0]))


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column_attr: int = 0
    type_oid: int = 0
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0


@dataclass(frozen=True, slots=True)
class RowDescription:
    TYPE: ClassVar[bytes] = b"T"

    fields: tuple[FieldDescription, ...]

    def encode(self) -> bytes:
        out = bytearray(b"T\0\0\0\0")
        out += _U16.pack(len(self.fields))
        pack = _FIELD.pack
        for f in self.fields:
            if f.format not in _FORMATS:
                raise ValueError(f"unsupported format code {f.format}")
            out += _cstr_bytes(f.name)
            out += pack(f.table_oid, f.column_attr, f.type_oid, f.type_size, f.type_modifier, f.format)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "RowDescription"
        count = _u16(payload, 0, what)
        n = len(payload)
        # Each field takes at least its name's NUL plus 18 fixed bytes.
        if count * 19 > n - 2:
            raise _fail(what, f"{count} fields announced but only {n - 2} bytes remain")
        pos = 2
        size = _FIELD.size
        unpack = _FIELD.unpack_from
        fields: list[FieldDescription] = []
        for _ in range(count):
            name, pos = _cstr(payload, pos, what)
            if n - pos < size:
                raise _fail(what, "truncated")
            table_oid, attr, type_oid, type_size, modifier, fmt = unpack(payload, pos)
            if fmt != 0 and fmt != 1:
                raise _fail(what, f"unsupported format code {fmt}")
            pos += size
            fields.append(FieldDescription(name, table_oid, attr, type_oid, type_size, modifier, fmt))
        _end(payload, pos, what)
        return cls(tuple(fields))


@dataclass(frozen=True, slots=True)
class DataRow:
    TYPE: ClassVar[bytes] = b"D"

    values: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        out = bytearray(b"D\0\0\0\0")
        out += _U16.pack(len(self.values))
        _pack_values(out, self.values)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        count = _u16(payload, 0, "DataRow")
        values, pos = _values(payload, 2, count, "DataRow")
        _end(payload, pos, "DataRow")
        return cls(values)


@dataclass(frozen=True, slots=True)
class CommandComplete:
    TYPE: ClassVar[bytes] = b"C"

    tag: str

    def encode(self) -> bytes:
        body = _cstr_bytes(self.tag)
        return b"C" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        tag, pos = _cstr(payload, 0, "CommandComplete")
        _end(payload, pos, "CommandComplete")
        return cls(tag)


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse:
    TYPE: ClassVar[bytes] = b"I"

    def encode(self) -> bytes:
        return b"I\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class _FieldsResponse:
    """ErrorResponse and NoticeResponse: a list of (one-letter code, value) fields."""

    TYPE: ClassVar[bytes]

    fields: tuple[tuple[str, str], ...]

    def field(self, code: str) -> str | None:
        """Value of field ``code`` (e.g. 'C', 'M', 'D'); the last occurrence wins, as in libpq."""
        for key, value in reversed(self.fields):
            if key == code:
                return value
        return None

    @property
    def severity(self) -> str:
        """Non-localized severity ('V') if present, else the possibly localized one ('S')."""
        return self.field("V") or self.field("S") or ""

    @property
    def sqlstate(self) -> str:
        return self.field("C") or ""

    @property
    def message(self) -> str:
        return self.field("M") or ""

    @classmethod
    def build(
        cls,
        sqlstate: str,
        message: str,
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
    ) -> Self:
        if len(sqlstate) != 5 or not sqlstate.isascii() or not sqlstate.isalnum():
            raise ValueError(f"SQLSTATE must be 5 ASCII letters or digits, not {sqlstate!r}")
        fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
        if detail is not None:
            fields.append(("D", detail))
        if hint is not None:
            fields.append(("H", hint))
        return cls(tuple(fields))

    def encode(self) -> bytes:
        out = bytearray(self.TYPE + b"\0\0\0\0")
        for code, value in self.fields:
            if len(code) != 1 or not "\x01" <= code <= "\x7f":
                raise ValueError(f"field code must be one ASCII character other than NUL, not {code!r}")
            out += code.encode("ascii")
            out += _cstr_bytes(value)
        out += b"\0"
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        fields: list[tuple[str, str]] = []
        pos = 0
        n = len(payload)
        while True:
            if pos >= n:
                raise _fail(what, "missing terminator")
            code = payload[pos]
            if code == 0:
                pos += 1
                break
            if code > 0x7F:
                raise _fail(what, f"invalid field code 0x{code:02x}")
            value, pos = _cstr(payload, pos + 1, what)
            fields.append((chr(code), value))
        _end(payload, pos, what)
        return cls(tuple(fields))


@dataclass(frozen=True, slots=True)
class ErrorResponse(_FieldsResponse):
    TYPE: ClassVar[bytes] = b"E"


@dataclass(frozen=True, slots=True)
class NoticeResponse(_FieldsResponse):
    TYPE: ClassVar[bytes] = b"N"


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    TYPE: ClassVar[bytes] = b"A"

    process_id: int
    channel: str
    payload: str

    def encode(self) -> bytes:
        body = _I32.pack(self.process_id) + _cstr_bytes(self.channel) + _cstr_bytes(self.payload)
        return b"A" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "NotificationResponse"
        process_id = _i32(payload, 0, what)
        channel, pos = _cstr(payload, 4, what)
        text, pos = _cstr(payload, pos, what)
        _end(payload, pos, what)
        return cls(process_id, channel, text)


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    TYPE: ClassVar[bytes] = b"t"

    type_oids: tuple[int, ...]

    def encode(self) -> bytes:
        n = len(self.type_oids)
        body = struct.pack(f"!H{n}I", n, *self.type_oids)
        return b"t" + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        count = _u16(payload, 0, "ParameterDescription")
        oids, pos = _oids(payload, 2, count, "ParameterDescription")
        _end(payload, pos, "ParameterDescription")
        return cls(oids)


@dataclass(frozen=True, slots=True)
class NoData:
    TYPE: ClassVar[bytes] = b"n"

    def encode(self) -> bytes:
        return b"n\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class ParseComplete:
    TYPE: ClassVar[bytes] = b"1"

    def encode(self) -> bytes:
        return b"1\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class BindComplete:
    TYPE: ClassVar[bytes] = b"2"

    def encode(self) -> bytes:
        return b"2\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class CloseComplete:
    TYPE: ClassVar[bytes] = b"3"

    def encode(self) -> bytes:
        return b"3\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class PortalSuspended:
    TYPE: ClassVar[bytes] = b"s"

    def encode(self) -> bytes:
        return b"s\0\0\0\x04"

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _empty(payload, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class _CopyResponse:
    """CopyInResponse / CopyOutResponse / CopyBothResponse."""

    TYPE: ClassVar[bytes]

    overall_format: int
    column_formats: tuple[int, ...] = ()

    def encode(self) -> bytes:
        if self.overall_format not in _FORMATS:
            raise ValueError(f"unsupported format code {self.overall_format}")
        body = bytes((self.overall_format,)) + _pack_formats(self.column_formats)
        return self.TYPE + _I32.pack(len(body) + 4) + body

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = cls.__name__
        if not payload:
            raise _fail(what, "truncated")
        overall = payload[0]
        if overall != 0 and overall != 1:
            raise _fail(what, f"unsupported format code {overall}")
        column_formats, pos = _formats(payload, 1, what)
        _end(payload, pos, what)
        return cls(overall, column_formats)


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"G"


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    TYPE: ClassVar[bytes] = b"W"


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    TYPE: ClassVar[bytes] = b"V"

    value: bytes | None

    def encode(self) -> bytes:
        out = bytearray(b"V\0\0\0\0")
        _pack_values(out, (self.value,))
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        (value,), pos = _values(payload, 0, 1, "FunctionCallResponse")
        _end(payload, pos, "FunctionCallResponse")
        return cls(value)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    TYPE: ClassVar[bytes] = b"v"

    newest_minor: int
    unsupported_options: tuple[str, ...] = ()

    def encode(self) -> bytes:
        out = bytearray(b"v\0\0\0\0")
        out += _I32_PAIR.pack(self.newest_minor, len(self.unsupported_options))
        for option in self.unsupported_options:
            out += _cstr_bytes(option)
        return _finish(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        what = "NegotiateProtocolVersion"
        newest_minor = _i32(payload, 0, what)
        count = _i32(payload, 4, what)
        pos = 8
        # Each option takes at least its NUL.
        if count < 0 or count > len(payload) - pos:
            raise _fail(what, f"invalid option count {count}")
        options: list[str] = []
        for _ in range(count):
            option, pos = _cstr(payload, pos, what)
            options.append(option)
        _end(payload, pos, what)
        return cls(newest_minor, tuple(options))


# =========================================================================== dispatch

FrontendMessage: TypeAlias = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Sync
    | Flush
    | Close
    | CopyData
    | CopyDone
    | CopyFail
    | FunctionCall
    | Terminate
    | PasswordMessage
    | SASLInitialResponse
    | SASLResponse
    | GSSResponse
)

BackendMessage: TypeAlias = (
    AuthenticationMessage
    | ParameterStatus
    | BackendKeyData
    | ReadyForQuery
    | RowDescription
    | DataRow
    | CommandComplete
    | EmptyQueryResponse
    | ErrorResponse
    | NoticeResponse
    | NotificationResponse
    | ParameterDescription
    | NoData
    | ParseComplete
    | BindComplete
    | CloseComplete
    | PortalSuspended
    | CopyInResponse
    | CopyOutResponse
    | CopyBothResponse
    | FunctionCallResponse
    | NegotiateProtocolVersion
    | CopyData
    | CopyDone
)

_FRONTEND: dict[int, Callable[[bytes], FrontendMessage]] = {
    cls.TYPE[0]: cls.decode
    for cls in (
        Query,
        Parse,
        Bind,
        Describe,
        Execute,
        Sync,
        Flush,
        Close,
        CopyData,
        CopyDone,
        CopyFail,
        FunctionCall,
        Terminate,
        PasswordMessage,  # b"p" stays raw until the session knows which exchange it is in
    )
}

_BACKEND: dict[int, Callable[[bytes], BackendMessage]] = {
    cls.TYPE[0]: cls.decode
    for cls in (
        ParameterStatus,
        BackendKeyData,
        ReadyForQuery,
        RowDescription,
        DataRow,
        CommandComplete,
        EmptyQueryResponse,
        ErrorResponse,
        NoticeResponse,
        NotificationResponse,
        ParameterDescription,
        NoData,
        ParseComplete,
        BindComplete,
        CloseComplete,
        PortalSuspended,
        CopyInResponse,
        CopyOutResponse,
        CopyBothResponse,
        FunctionCallResponse,
        NegotiateProtocolVersion,
        CopyData,
        CopyDone,
    )
}
_BACKEND[ord("R")] = _decode_authentication


def _type_repr(type_byte: int) -> str:
    return repr(chr(type_byte)) if 0 <= type_byte <= 0xFF else str(type_byte)


def decode_frontend(type_byte: int, payload: bytes) -> FrontendMessage:
    """Decode a typed message sent by a client (after the startup packet)."""
    decoder = _FRONTEND.get(type_byte)
    if decoder is None:
        raise UnknownMessageType(f"invalid frontend message type {_type_repr(type_byte)}")
    return decoder(payload)


def decode_backend(type_byte: int, payload: bytes) -> BackendMessage:
    """Decode a typed message sent by a server."""
    decoder = _BACKEND.get(type_byte)
    if decoder is None:
        raise UnknownMessageType(f"invalid backend message type {_type_repr(type_byte)}")
    return decoder(payload)
