"""Framing of Postgres v3 byte streams into (type, payload) frames.

Owns: splitting a byte stream into whole messages, bounding their size.
Never: performs I/O, trusts a length field, or interprets payloads.

Two kinds of frames exist on the wire:
- *untyped* frames at the start of a connection (StartupMessage, SSLRequest,
  GSSENCRequest, CancelRequest): int32 length (including itself) + body;
- *typed* frames afterwards: one type byte + int32 length (including itself,
  excluding the type byte) + body.
"""

from __future__ import annotations

from struct import Struct

from enforcer.wire.errors import MessageTooLarge, ProtocolError

_I32 = Struct("!i")

#: Postgres itself refuses startup packets larger than this (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_PACKET = 10_000
#: Default bound for one typed message from a client (Bind with large parameters, COPY rows).
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


class Framer:
    """Incremental splitter for typed frames.

    Feed bytes with :meth:`feed`; take whole frames with :meth:`next_frame`.
    The raw bytes of each frame (header included) are available for relaying
    unchanged, which keeps the pass-through path free of re-encoding.
    """

    __slots__ = ("_buf", "_pos", "max_message")

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_message = max_message

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    def next_frame(self) -> tuple[int, bytes, bytes] | None:
        """Return ``(type_byte, payload, raw_frame)`` or None if incomplete.

        Raises MessageTooLarge or ProtocolError on a bad length field before
        buffering the announced body, so a hostile length costs nothing.
        """
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 5:
            return None
        (length,) = _I32.unpack_from(buf, pos + 1)
        self._check_length(buf[pos], length)
        end = pos + 1 + length
        if len(buf) < end:
            return None
        raw = bytes(buf[pos:end])
        self._pos = end
        return buf[pos], raw[5:], raw

    def take_all_complete(self) -> tuple[bytes, list[tuple[int, int, int]]]:
        """Return all complete frames as one byte string plus their (type, start, end) spans.

        ``start``/``end`` index into the returned bytes and delimit the payload.
        Used by the relay fast path: one copy, one write.
        """
        start = self._pos
        spans, pos = self._scan(self._buf, start)
        chunk = bytes(self._buf[start:pos])
        self._pos = pos
        return chunk, spans

    def feed_and_take(self, data: bytes) -> tuple[bytes, list[tuple[int, int, int]]]:
        """:meth:`feed` then :meth:`take_all_complete`, without copying ``data`` when nothing is buffered.

        The relay's hot path: a read usually holds whole messages, which then go out as the
        very same bytes object.
        """
        if len(self._buf) - self._pos:
            self.feed(data)
            return self.take_all_complete()
        spans, pos = self._scan(data, 0)
        if pos == len(data):
            return data, spans
        self.feed(data[pos:])
        return data[:pos], spans

    def _check_length(self, type_byte: int, length: int) -> None:
        if length < 4:
            raise ProtocolError(f"invalid message length {length} for message type {chr(type_byte)!r}")
        if length - 4 > self.max_message:
            raise MessageTooLarge(
                f"message of type {chr(type_byte)!r} announces {length - 4} bytes, "
                f"more than the maximum of {self.max_message}"
            )

    def _scan(self, buf: bytes | bytearray, start: int) -> tuple[list[tuple[int, int, int]], int]:
        """Spans (relative to ``start``) of the complete frames from ``start``, and where they end.

        Raises on a bad length field before any of its body is needed.
        """
        n = len(buf)
        pos = start
        spans: list[tuple[int, int, int]] = []
        unpack = _I32.unpack_from
        maxm = self.max_message
        while n - pos >= 5:
            (length,) = unpack(buf, pos + 1)
            if length < 4 or length - 4 > maxm:
                self._check_length(buf[pos], length)
            end = pos + 1 + length
            if end > n:
                break
            spans.append((buf[pos], pos + 5 - start, end - start))
            pos = end
        return spans, pos

    def take_rest(self) -> bytes:
        """Remove and return everything buffered (used when switching to TLS or closing)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest


def untyped_length(head: bytes) -> int:
    """Validate the int32 length word of an untyped frame and return it (it counts itself)."""
    (length,) = _I32.unpack_from(head, 0)
    if length < 8:
        raise ProtocolError(f"invalid startup packet length {length}")
    if length > MAX_STARTUP_PACKET:
        raise MessageTooLarge(f"startup packet of {length} bytes exceeds the maximum of {MAX_STARTUP_PACKET}")
    return int(length)


def split_untyped(buf: bytes | bytearray, max_length: int = MAX_STARTUP_PACKET) -> tuple[bytes, int] | None:
    """Split one untyped (startup-phase) frame off the front of ``buf``.

    Returns ``(body, consumed)`` where body excludes the length word, or None if
    more bytes are needed.
    """
    if len(buf) < 4:
        return None
    (length,) = _I32.unpack_from(buf, 0)
    if length < 8:
        raise ProtocolError(f"invalid startup packet length {length}")
    if length > max_length:
        raise MessageTooLarge(f"startup packet of {length} bytes exceeds the maximum of {max_length}")
    if len(buf) < length:
        return None
    return bytes(buf[4:length]), length
