"""Framing: splitting byte streams into frames without trusting a length field."""

from __future__ import annotations

import struct

import pytest

from enforcer.wire import (
    MAX_STARTUP_PACKET,
    Framer,
    MessageTooLarge,
    ProtocolError,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    split_untyped,
    untyped_length,
)

QUERY = Query("SELECT 1;").encode()
SYNC = Sync().encode()


def test_needs_a_whole_header() -> None:
    framer = Framer()
    assert framer.next_frame() is None
    framer.feed(QUERY[:4])
    assert framer.next_frame() is None
    assert framer.buffered() == 4


def test_needs_a_whole_body() -> None:
    framer = Framer()
    framer.feed(QUERY[:-1])
    assert framer.next_frame() is None
    framer.feed(QUERY[-1:])
    assert framer.next_frame() == (ord("Q"), QUERY[5:], QUERY)
    assert framer.next_frame() is None
    assert framer.buffered() == 0


def test_byte_at_a_time() -> None:
    stream = QUERY + SYNC + QUERY
    framer = Framer()
    frames = []
    for i in range(len(stream)):
        framer.feed(stream[i : i + 1])
        while (item := framer.next_frame()) is not None:
            frames.append(item[2])
    assert frames == [QUERY, SYNC, QUERY]


def test_several_frames_in_one_feed_and_empty_body() -> None:
    framer = Framer()
    framer.feed(QUERY + SYNC + QUERY[:3])
    assert framer.next_frame() == (ord("Q"), QUERY[5:], QUERY)
    assert framer.next_frame() == (ord("S"), b"", SYNC)
    assert framer.next_frame() is None
    assert framer.buffered() == 3
    framer.feed(QUERY[3:])
    assert framer.next_frame() == (ord("Q"), QUERY[5:], QUERY)


def test_frames_are_bytes_not_views() -> None:
    framer = Framer()
    framer.feed(QUERY)
    item = framer.next_frame()
    assert item is not None
    framer.feed(SYNC)  # compacts the internal buffer; earlier results must not change
    assert type(item[1]) is bytes
    assert type(item[2]) is bytes
    assert item[2] == QUERY


@pytest.mark.parametrize("length", [0, 1, 3, -1, -(2**31)])
def test_length_below_four_is_a_protocol_error(length: int) -> None:
    framer = Framer()
    framer.feed(b"Q" + struct.pack("!i", length))
    with pytest.raises(ProtocolError, match="invalid message length"):
        framer.next_frame()


def test_oversized_length_refused_from_the_header_alone() -> None:
    framer = Framer(max_message=100)
    framer.feed(b"d" + struct.pack("!i", 2**31 - 1))
    with pytest.raises(MessageTooLarge, match="more than the maximum of 100"):
        framer.next_frame()
    assert framer.buffered() == 5


def test_message_at_the_limit_is_accepted() -> None:
    framer = Framer(max_message=10)
    framer.feed(b"d" + struct.pack("!i", 14) + b"0123456789")
    item = framer.next_frame()
    assert item is not None
    assert item[1] == b"0123456789"
    framer.feed(b"d" + struct.pack("!i", 15))
    with pytest.raises(MessageTooLarge):
        framer.next_frame()


def test_message_too_large_is_a_protocol_error() -> None:
    assert issubclass(MessageTooLarge, ProtocolError)
    assert MessageTooLarge.sqlstate == "08P01"


def test_take_all_complete_returns_spans_into_one_chunk() -> None:
    framer = Framer()
    framer.feed(QUERY + SYNC + QUERY[:7])
    chunk, spans = framer.take_all_complete()
    assert chunk == QUERY + SYNC
    assert spans == [(ord("Q"), 5, len(QUERY)), (ord("S"), len(QUERY) + 5, len(QUERY) + 5)]
    for _type, start, end in spans:
        assert struct.unpack_from("!i", chunk, start - 4)[0] == end - start + 4
    assert framer.buffered() == 7
    assert framer.take_all_complete() == (b"", [])
    framer.feed(QUERY[7:])
    assert framer.next_frame() == (ord("Q"), QUERY[5:], QUERY)


def test_take_all_complete_checks_lengths() -> None:
    framer = Framer(max_message=100)
    framer.feed(SYNC + b"d" + struct.pack("!i", 1000))
    with pytest.raises(MessageTooLarge):
        framer.take_all_complete()
    framer = Framer()
    framer.feed(SYNC + b"d" + struct.pack("!i", 2))
    with pytest.raises(ProtocolError, match="invalid message length 2"):
        framer.take_all_complete()


def test_take_rest() -> None:
    framer = Framer()
    framer.feed(QUERY + b"\x16\x03\x01")
    assert framer.next_frame() is not None
    assert framer.take_rest() == b"\x16\x03\x01"
    assert framer.buffered() == 0
    assert framer.next_frame() is None


# --------------------------------------------------------------------------- untyped


def test_split_untyped_incomplete() -> None:
    raw = StartupMessage(params=(("user", "u"),)).encode()
    assert split_untyped(b"") is None
    assert split_untyped(raw[:3]) is None
    assert split_untyped(raw[:-1]) is None


def test_split_untyped_leaves_what_follows() -> None:
    raw = SSLRequest().encode()
    assert split_untyped(bytearray(raw + b"\x16\x03")) == (raw[4:], 8)


@pytest.mark.parametrize("length", [0, 4, 7, -1])
def test_split_untyped_too_short(length: int) -> None:
    with pytest.raises(ProtocolError, match="invalid startup packet length"):
        split_untyped(struct.pack("!i", length) + b"\x00" * 8)


def test_split_untyped_too_long() -> None:
    with pytest.raises(MessageTooLarge):
        split_untyped(struct.pack("!i", MAX_STARTUP_PACKET + 1))
    with pytest.raises(MessageTooLarge):
        split_untyped(struct.pack("!i", 2**31 - 1))
    with pytest.raises(MessageTooLarge):
        split_untyped(struct.pack("!i", 100) + b"\x00" * 96, max_length=99)


def test_untyped_length() -> None:
    assert untyped_length(SSLRequest().encode()[:4]) == 8
    assert untyped_length(struct.pack("!i", MAX_STARTUP_PACKET)) == MAX_STARTUP_PACKET
    with pytest.raises(ProtocolError, match="invalid startup packet length"):
        untyped_length(struct.pack("!i", 7))
    with pytest.raises(MessageTooLarge):
        untyped_length(struct.pack("!i", MAX_STARTUP_PACKET + 1))


def test_feed_and_take_matches_feed_then_take_for_any_split() -> None:
    from enforcer.wire import CommandComplete, DataRow, ReadyForQuery

    stream = (
        DataRow((b"a", None, b"ccc")).encode()
        + CommandComplete("SELECT 1").encode()
        + ReadyForQuery("I").encode()
    )
    for cut in range(len(stream) + 1):
        for cut2 in range(cut, len(stream) + 1):
            a, b = Framer(), Framer()
            got_a: list[bytes] = []
            got_b: list[bytes] = []
            for piece in (stream[:cut], stream[cut:cut2], stream[cut2:]):
                chunk, spans = a.feed_and_take(piece)
                got_a += [chunk[s - 5 : e] for _, s, e in spans]
                b.feed(piece)
                chunk, spans = b.take_all_complete()
                got_b += [chunk[s - 5 : e] for _, s, e in spans]
            assert got_a == got_b and b"".join(got_a) == stream


def test_feed_and_take_returns_the_same_object_for_whole_messages() -> None:
    from enforcer.wire import ReadyForQuery

    data = ReadyForQuery("T").encode() * 3
    chunk, spans = Framer().feed_and_take(data)
    assert chunk is data and len(spans) == 3


def test_feed_and_take_bounds_lengths() -> None:
    with pytest.raises(MessageTooLarge):
        Framer(max_message=10).feed_and_take(b"D\x00\x00\x01\x00")
    with pytest.raises(ProtocolError):
        Framer().feed_and_take(b"D\x00\x00\x00\x02")
