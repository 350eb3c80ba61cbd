"""The decision log's journal: a memory-mapped ring every record passes through on its way to a segment.

Owns: the ``journal`` file of a stream (a few MiB, allocated once), putting a record into
it (its sequence number and its body: the JSON object before the chain member), marking
records as copied into the segment, and listing those not yet marked copied, for recovery
after a crash.
Never: chains or hashes a record (the decision log does that when it copies records into
the segment, and recovery does the same with what it finds here), and never is the record
of truth: segments are; the journal only carries records across a crash.

Why: a decision record must exist before its statement is forwarded. Storing it into a
shared file mapping puts it in the kernel's page cache, exactly where write(2) would, so
it survives the gateway process being killed the same way; but it costs a memory copy
instead of a system call, which on virtual machines costs far more than its own few
microseconds. The decision log then chains the records (sequence number, previous hash,
SHA-256) and copies them into the segment with write(2) right after the statement was
forwarded, while the gateway waits for Postgres. Chaining is deterministic: the stream,
the sequence number, the previous record's hash and the body make the line, so recovery
rebuilds byte for byte the line the copy would have written.

Layout: a 4 KiB header (magic, capacity, offset of the oldest record not yet copied), then
entries of a 4-byte little-endian body length, the record's 8-byte sequence number, a
CRC-32 of the sequence number and body, and the body. A zero length ends the entries; a
length of 0xFFFFFFFF means the next entry is at the start of the ring. Every entry is
followed by a zero length until the next one is complete, so a process that ends half-way
through storing a record leaves the entries before it intact and the partial one unread;
the CRC also stops the reading at an entry that only partly reached the disk (a power loss
while the kernel was writing the journal's pages back).
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

JOURNAL = "journal"
JOURNAL_SIZE = 4 << 20
_MAGIC = b"PGWJRNL2"
_FRESH = bytes(8)
_HEADER = 4096
_LENGTH = struct.Struct("<I")
_SEQ_CRC = struct.Struct("<QI")
_ENTRY_HEAD = _LENGTH.size + _SEQ_CRC.size
_WRAP = 0xFFFFFFFF
_OFFSET = struct.Struct("<Q")
_CAPACITY_AT, _TAIL_AT = 8, 16


class Entry(NamedTuple):
    """One record as the journal holds it: its place in the chain and its unchained body."""

    seq: int
    body: bytes


def _crc(seq: int, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(seq.to_bytes(8, "little")))


def pending_entries(m: bytes | mmap.mmap) -> list[Entry]:
    """The entries of a journal's contents from the oldest one not marked copied on, in order,
    up to the end of the entries or the first whose CRC does not match (whether they continue
    the chain is for the caller to check)."""
    cap = len(m)
    if m[:8] != _MAGIC or cap < 2 * _HEADER:
        return []
    pos = _OFFSET.unpack_from(m, _TAIL_AT)[0]
    out: list[Entry] = []
    seen = 0
    while pos >= _HEADER and seen < cap and pos + _ENTRY_HEAD <= cap:
        n = _LENGTH.unpack_from(m, pos)[0]
        if n == 0:
            break
        if n == _WRAP:
            seen += cap - pos
            pos = _HEADER
            continue
        end = pos + _ENTRY_HEAD + n
        if end > cap:
            break
        seq, crc = _SEQ_CRC.unpack_from(m, pos + _LENGTH.size)
        body = bytes(m[pos + _ENTRY_HEAD : end])
        if _crc(seq, body) != crc:
            break
        out.append(Entry(seq, body))
        seen += end - pos
        pos = end
    return out


def read_pending(path: Path) -> list[Entry]:
    """:func:`pending_entries` of a journal file, read without changing it (for verify)."""
    try:
        return pending_entries(path.read_bytes())
    except FileNotFoundError:
        return []


class Journal:
    """The ring of one stream; its owner holds the stream's lock, so it has a single writer."""

    def __init__(self, path: Path, size: int = JOURNAL_SIZE) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            current = os.fstat(self._fd).st_size
            if current >= 2 * _HEADER:
                size = current  # an existing journal keeps its size until it is recovered
            else:
                os.posix_fallocate(self._fd, 0, size)  # allocated now: no ENOSPC half-way through
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        self.capacity = size
        self._pos = _HEADER
        self._used = 0

    def pending(self) -> list[Entry]:
        """The entries from the oldest one not marked copied on, in order (see :func:`pending_entries`)."""
        return pending_entries(self._map)

    @property
    def foreign(self) -> bool:
        """The file holds something other than an empty or a current journal (another format)."""
        return self._map[:8] not in (_FRESH, _MAGIC)

    def reset(self) -> None:
        """Start empty (after recovery): zeroes the ring, which also maps every page in now
        rather than one page fault at a time on the data path."""
        m = self._map
        m[_HEADER:] = bytes(self.capacity - _HEADER)
        _OFFSET.pack_into(m, _CAPACITY_AT, self.capacity)
        _OFFSET.pack_into(m, _TAIL_AT, _HEADER)
        m[:8] = _MAGIC
        self._pos, self._used = _HEADER, 0

    def put(self, seq: int, body: bytes) -> bool:
        """Store record ``seq`` after the others; False if it does not fit until the records
        before it are copied (or ever, when it is larger than the ring)."""
        m, cap, pos = self._map, self.capacity, self._pos
        size = len(body)
        need = _ENTRY_HEAD + size
        waste = 0
        if pos + need + _LENGTH.size > cap:  # an entry always leaves room for the zero after it
            waste, start = cap - pos, _HEADER
        else:
            start = pos
        if self._used + waste + need + _LENGTH.size > cap - _HEADER:
            return False
        # The body, the zero that ends the entries after it, and only then its length, which
        # replaces the zero that ended them before: until then, a reader stops in front of it.
        end = start + need
        m[start + _ENTRY_HEAD : end] = body
        _LENGTH.pack_into(m, end, 0)
        _SEQ_CRC.pack_into(m, start + _LENGTH.size, seq, _crc(seq, body))
        _LENGTH.pack_into(m, start, size)
        if waste:
            _LENGTH.pack_into(m, pos, _WRAP)
        self._pos = end
        self._used += waste + need
        return True

    def copied(self) -> None:
        """Every record put so far is in the segment file."""
        _OFFSET.pack_into(self._map, _TAIL_AT, self._pos)
        self._used = 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
