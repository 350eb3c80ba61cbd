"""Property tests: hostile bytes only ever raise ProtocolError; valid messages survive any chunking."""

from __future__ import annotations

import contextlib
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.wire import (
    Bind,
    DataRow,
    ErrorResponse,
    FieldDescription,
    Framer,
    NoticeResponse,
    Parse,
    PasswordMessage,
    ProtocolError,
    Query,
    RowDescription,
    SASLInitialResponse,
    Sync,
    decode_backend,
    decode_frontend,
    decode_untyped,
    split_untyped,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings the protocol can carry: any Unicode scalar value except NUL.
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
values = st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=12).map(tuple)
formats = st.lists(st.sampled_from([0, 1]), max_size=6).map(tuple)
oids = st.lists(st.integers(0, 2**32 - 1), max_size=8).map(tuple)
int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def binds(draw: st.DrawFn) -> Bind:
    params = draw(values)
    n_formats = draw(st.sampled_from(sorted({0, 1, len(params)})))
    param_formats = tuple(draw(st.sampled_from([0, 1])) for _ in range(n_formats))
    return Bind(draw(text), draw(text), param_formats, params, draw(formats))


field_descriptions = st.builds(
    FieldDescription,
    name=text,
    table_oid=st.integers(0, 2**32 - 1),
    column_attr=int16,
    type_oid=st.integers(0, 2**32 - 1),
    type_size=int16,
    type_modifier=int32,
    format=st.sampled_from([0, 1]),
)
error_fields = st.lists(st.tuples(st.characters(min_codepoint=1, max_codepoint=127), text), max_size=8).map(
    tuple
)

frontend_messages = st.one_of(
    st.builds(Query, text),
    st.builds(Parse, text, text, oids),
    binds(),
    st.just(Sync()),
)
backend_messages = st.one_of(
    st.builds(DataRow, values),
    st.builds(RowDescription, st.lists(field_descriptions, max_size=6).map(tuple)),
    st.builds(ErrorResponse, error_fields),
    st.builds(NoticeResponse, error_fields),
)


def _drain(framer: Framer) -> list[bytes]:
    frames = []
    while (item := framer.next_frame()) is not None:
        frames.append(item[2])
    return frames


# --------------------------------------------------------------------------- (a) hostile bytes


@FAST
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_framer_on_arbitrary_bytes_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    framer = Framer(max_message=256)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    try:
        for start, end in pairwise(bounds):
            framer.feed(data[start:end])
            _drain(framer)
        framer.take_all_complete()
    except ProtocolError:
        pass


@FAST
@given(type_byte=st.integers(0, 255), payload=st.binary(max_size=200))
def test_decoders_on_arbitrary_payloads_raise_only_protocol_errors(type_byte: int, payload: bytes) -> None:
    for decode in (decode_frontend, decode_backend):
        with contextlib.suppress(ProtocolError):
            decode(type_byte, payload)


# Arbitrary bytes rarely get past the first check; these look like real bodies and get further.
@FAST
@given(
    type_byte=st.sampled_from(sorted(set(b"QPBDESHCdcfFXpRKZTIENAtn123sGHWVv"))),
    head=st.sampled_from(
        [b"", b"\x00", b"\x00\x01", b"\x00\x00\x00\x0a", b"\x00\x00\x00\x05", b"\x00\x02", b"S", b"P"]
    ),
    parts=st.lists(
        st.one_of(
            st.sampled_from([b"\x00", b"\xff\xff\xff\xff", b"\x00\x01", b"\x00\x00\x00\x01", b"\xff"]),
            st.binary(max_size=6),
        ),
        max_size=10,
    ),
)
def test_decoders_on_structured_garbage_raise_only_protocol_errors(
    type_byte: int, head: bytes, parts: list[bytes]
) -> None:
    payload = head + b"".join(parts)
    for decode in (decode_frontend, decode_backend):
        with contextlib.suppress(ProtocolError):
            decode(type_byte, payload)


@FAST
@given(
    code=st.sampled_from(
        [b"\x00\x03\x00\x00", b"\x00\x03\x00\x02", b"\x04\xd2\x16\x2e", b"\x04\xd2\x16\x2f"]
    ),
    rest=st.binary(max_size=64),
)
def test_untyped_on_arbitrary_bodies_raises_only_protocol_errors(code: bytes, rest: bytes) -> None:
    for body in (rest, code + rest):
        with contextlib.suppress(ProtocolError):
            split_untyped(body)
        with contextlib.suppress(ProtocolError):
            decode_untyped(body)


@FAST
@given(
    payload=st.binary(max_size=64)
    | st.builds(lambda a, b: a + b"\x00" + b, text.map(str.encode), st.binary(max_size=12))
)
def test_authentication_payload_decoders_raise_only_protocol_errors(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        SASLInitialResponse.decode(payload)
    with contextlib.suppress(ProtocolError):
        PasswordMessage(payload).password()


# --------------------------------------------------------------------------- (b) round trips


def _round_trip(msg: Any, decode: Any) -> None:
    raw = msg.encode()
    framer = Framer()
    framer.feed(raw)
    item = framer.next_frame()
    assert item is not None
    assert item[2] == raw
    decoded = decode(item[0], item[1])
    assert decoded == msg
    assert decoded.encode() == raw


@FAST
@given(frontend_messages)
def test_frontend_round_trip(msg: Any) -> None:
    _round_trip(msg, decode_frontend)


@FAST
@given(backend_messages)
def test_backend_round_trip(msg: Any) -> None:
    _round_trip(msg, decode_backend)


@FAST
@given(
    sqlstate=st.text(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=5, max_size=5),
    message=text,
    detail=st.none() | text,
    hint=st.none() | text,
)
def test_error_response_build_round_trip(
    sqlstate: str, message: str, detail: str | None, hint: str | None
) -> None:
    err = ErrorResponse.build(sqlstate, message, detail=detail, hint=hint)
    _round_trip(err, decode_backend)
    assert (err.sqlstate, err.message, err.field("D"), err.field("H")) == (sqlstate, message, detail, hint)


# --------------------------------------------------------------------------- (c) chunking


@FAST
@given(
    msgs=st.lists(st.one_of(frontend_messages, backend_messages), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_chunking_yields_the_same_frames(msgs: list[Any], cuts: list[int]) -> None:
    encoded = [m.encode() for m in msgs]
    stream = b"".join(encoded)
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]

    framer = Framer()
    frames: list[bytes] = []
    for start, end in pairwise(bounds):
        framer.feed(stream[start:end])
        frames.extend(_drain(framer))
    assert frames == encoded
    assert framer.buffered() == 0

    relay = Framer()
    relayed: list[bytes] = []
    for start, end in pairwise(bounds):
        relay.feed(stream[start:end])
        chunk, spans = relay.take_all_complete()
        relayed.extend(chunk[s - 5 : e] for _t, s, e in spans)
    assert relayed == encoded
