"""The decision log's journal: a memory-mapped ring every record passes through on its way to a segment.

Owns: the ``journal`` file of a stream (a few MiB, allocated once), putting a complete
record line into it, marking lines as copied into the segment, and listing the lines not
yet marked copied, for recovery after a crash.
Never: decides what a line means or whether it belongs to the chain (the decision log
checks each line's hash and sequence before it recovers anything), and never is the
record of truth: segments are; the journal only carries lines across a crash.

Why: a decision record must exist before its statement is forwarded. Storing it into a
shared file mapping puts it in the kernel's page cache, exactly where write(2) would, so
it survives the gateway process being killed the same way; but it costs a memory copy
instead of a system call, which on virtual machines costs far more than its own few
microseconds. The decision log then copies the lines into the segment with write(2)
right after the statement was forwarded, while the gateway waits for Postgres.

Layout: a 4 KiB header (magic, capacity, offset of the oldest line not yet copied), then
entries of a 4-byte little-endian length and the line. A zero length ends the entries; a
length of 0xFFFFFFFF means the next entry is at the start of the ring. Every entry is
followed by a zero length until the next one is complete, so a process that ends half-way
through storing a line leaves the entries before it intact and the partial one unread.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

JOURNAL = "journal"
JOURNAL_SIZE = 4 << 20
_MAGIC = b"PGWJRNL1"
_HEADER = 4096
_LENGTH = struct.Struct("<I")
_WRAP = 0xFFFFFFFF
_OFFSET = struct.Struct("<Q")
_CAPACITY_AT, _TAIL_AT = 8, 16


def pending_lines(m: bytes | mmap.mmap) -> list[bytes]:
    """The lines of a journal's contents from the oldest one not marked copied on, in order, up
    to the end of the entries (whether they belong to the chain is for the caller to check)."""
    cap = len(m)
    if m[:8] != _MAGIC or cap < 2 * _HEADER:
        return []
    pos = _OFFSET.unpack_from(m, _TAIL_AT)[0]
    out: list[bytes] = []
    seen = 0
    while pos >= _HEADER and seen < cap and pos + _LENGTH.size <= cap:
        n = _LENGTH.unpack_from(m, pos)[0]
        if n == 0:
            break
        if n == _WRAP:
            seen += cap - pos
            pos = _HEADER
            continue
        end = pos + _LENGTH.size + n
        if end > cap:
            break
        out.append(bytes(m[pos + _LENGTH.size : end]))
        seen += end - pos
        pos = end
    return out


def read_pending(path: Path) -> list[bytes]:
    """:func:`pending_lines` of a journal file, read without changing it (for verify)."""
    try:
        return pending_lines(path.read_bytes())
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

    def pending(self) -> list[bytes]:
        """The lines from the oldest one not marked copied on, in order (see :func:`pending_lines`)."""
        return pending_lines(self._map)

    def reset(self) -> None:
        """Start empty (after recovery): zeroes the ring, which also maps every page in now
        rather than one page fault at a time on the data path."""
        m = self._map
        m[_HEADER:] = bytes(self.capacity - _HEADER)
        _OFFSET.pack_into(m, _CAPACITY_AT, self.capacity)
        _OFFSET.pack_into(m, _TAIL_AT, _HEADER)
        m[:8] = _MAGIC
        self._pos, self._used = _HEADER, 0

    def put(self, line: bytes) -> bool:
        """Store one line after the others; False if it does not fit until the lines before
        it are copied (or ever, when it is larger than the ring)."""
        m, cap, pos = self._map, self.capacity, self._pos
        need = _LENGTH.size + len(line)
        waste = 0
        if pos + need + _LENGTH.size > cap:  # an entry always leaves room for the zero after it
            waste, start = cap - pos, _HEADER
        else:
            start = pos
        if self._used + waste + need + _LENGTH.size > cap - _HEADER:
            return False
        end = start + need
        # The line, the zero that ends the entries after it, and only then its length, which
        # replaces the zero that ended them before: until then, a reader stops in front of it.
        m[start + _LENGTH.size : end] = line
        _LENGTH.pack_into(m, end, 0)
        _LENGTH.pack_into(m, start, len(line))
        if waste:
            _LENGTH.pack_into(m, pos, _WRAP)
        self._pos = end
        self._used += waste + need
        return True

    def copied(self) -> None:
        """Every line put so far is in the segment file."""
        _OFFSET.pack_into(self._map, _TAIL_AT, self._pos)
        self._used = 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
