"""Decision log: OPA-style decision-log events, as hash-chained JSON-lines segments.

Owns: the record shape (OPA's decision_id, timestamp, path, input, result,
labels, metrics, plus what the enforcer did), storing it before the statement it
describes is forwarded (in the stream's journal, :mod:`enforcer.audit.journal`;
chained and copied into the segment right after), recovering what a killed process
left in the journal, the hash chain, segment rotation, retention anchors and the
fsync policy.
Never: swallows a write failure (the caller refuses the statement, or forwards
it with a loud error when configured to fail open); rewrites or deletes a record
other than by retention of whole segments.

Layout: ``<dir>/<stream>/<segment>.jsonl``; one stream per gateway process
(``<instance>-w<worker>``), held under an exclusive lock, so that each chain has a
single writer. Every line is one JSON object with an ``event`` (``segment``,
``decision``, ``outcome``, ``retention``, ``close``), a ``chain`` member
``{"stream", "seq", "prev"}`` and, last, ``"hash"``: the SHA-256 of the line's
bytes without the hash member (that is, the line up to ``,"hash":`` plus ``}``).
Editing, removing, reordering or cutting a record breaks the chain at that
record; ``pgwarden audit verify`` names it (see :mod:`enforcer.audit.verify`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from enforcer.audit.journal import JOURNAL, Entry, Journal

log = logging.getLogger("pgwarden.audit")

GENESIS = "0" * 64
#: Outcome records staged (in the journal) at most this many bytes before they are copied.
_DEFER_BYTES = 64 * 1024
#: Pieces handed to one writev(2) at most (Linux's IOV_MAX is 1024); more are joined first.
_MAX_IOVEC = 512
SEGMENT_SUFFIX = ".jsonl"
ANCHORS = "anchors.jsonl"
_HASH_TAIL = len(',"hash":"') + 64 + len('"}')


class Outcome(NamedTuple):
    """What came of one decided statement, for its ``outcome`` record."""

    decision_id: str
    session: str
    forwarded: bool
    command_tag: str
    rows: int | None
    duration_ms: float
    error: dict[str, str] | None


class DecisionLogError(Exception):
    """The record could not be written; the statement must not be forwarded."""


class _DecisionIds:
    """Random (version 4) UUID strings, formatted in batches from one ``os.urandom`` call.

    ``uuid.uuid4()`` costs a getrandom(2) call and a UUID object per statement; this runs
    once per statement on the data path. ``list.pop`` is atomic under the GIL, and a forked
    worker starts with an empty batch, so no two processes or threads share an id.
    """

    _BATCH = 256

    def __init__(self) -> None:
        self._ready: list[str] = []
        os.register_at_fork(after_in_child=self._ready.clear)

    def __call__(self) -> str:
        try:
            return self._ready.pop()
        except IndexError:
            self._refill()
            return self._ready.pop()

    def top_up(self) -> None:
        """Format the next batch ahead of need (the decision log calls this after forwarding, so
        that a statement does not wait the ~100 us a batch takes)."""
        if len(self._ready) < self._BATCH // 4:
            self._refill()

    def _refill(self) -> None:
        raw = os.urandom(16 * self._BATCH)
        batch = []
        for i in range(0, len(raw), 16):
            h = raw[i : i + 16].hex()
            variant = "89ab"[raw[i + 8] >> 6]  # RFC 4122 variant bits 10xx
            batch.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
        self._ready.extend(batch)


new_decision_id = _DecisionIds()


_second_cache: tuple[int, str] = (-1, "")


#: A JSON string literal exactly as ``json.dumps`` writes it (ASCII), without the encoder's overhead.
json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def decided_json(result_json: str, metrics: dict[str, int], enforcement: dict[str, Any]) -> str:
    """The ``result``, ``metrics`` and ``enforcement`` members of a decision record, serialised,
    with the comma that separates them from the ``input`` member."""
    dumps = json.dumps
    return (
        f'"result":{result_json},"metrics":{dumps(metrics, separators=(",", ":"))},'
        f'"enforcement":{dumps(enforcement, separators=(",", ":"), default=str)},'
    )


def rfc3339(ts: float) -> str:
    """UTC with microseconds; the date part is formatted once per second."""
    return _rfc3339_us(int(ts * 1e6))


def now_rfc3339() -> str:
    """The current time as :func:`rfc3339` writes it (this runs for every record)."""
    return _rfc3339_us(time.time_ns() // 1000)


def _rfc3339_us(us: int) -> str:
    global _second_cache
    second, frac = divmod(us, 1_000_000)
    if second != _second_cache[0]:
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_cache[1]}.{frac:06d}Z"


def split_hash(line: bytes) -> tuple[bytes, str] | None:
    """``(body, hash)`` of one record line without its newline, or None if it has no hash member."""
    if len(line) < _HASH_TAIL + 2 or not line.endswith(b'"}'):
        return None
    tail = line[-_HASH_TAIL:]
    if not tail.startswith(b',"hash":"'):
        return None
    digest = tail[9:-2].decode("ascii", "replace")
    return line[:-_HASH_TAIL] + b"}", digest


def segment_number(path: Path) -> int | None:
    stem = path.name.removesuffix(SEGMENT_SUFFIX)
    return int(stem) if path.name.endswith(SEGMENT_SUFFIX) and stem.isdigit() else None


def segments_of(stream_dir: Path) -> list[tuple[int, Path]]:
    found = [(n, p) for p in stream_dir.iterdir() if (n := segment_number(p)) is not None]
    return sorted(found)


@dataclass(frozen=True)
class ChainTip:
    """The last whole record of a segment: where the next record chains on."""

    seq: int
    hash: str
    event: str
    torn_bytes: int


def read_tip(path: Path) -> ChainTip | None:
    """The last whole record of a segment file (reading backwards), and how many bytes follow it."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        block = 1 << 16
        data = b""
        pos = size
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            end = data.rfind(b"\n")
            if end < 0:
                continue
            start = data.rfind(b"\n", 0, end)
            if start < 0 and pos > 0:
                block *= 2
                continue
            line = data[start + 1 : end]
            parts = split_hash(line)
            if parts is None:
                return None
            try:
                record = json.loads(parts[0])
                seq = int(record["chain"]["seq"])
            except (ValueError, KeyError, TypeError):
                return None
            return ChainTip(seq, parts[1], str(record.get("event", "")), size - (pos + end + 1))
        return None


def chain_line(body: bytes, stream: bytes, seq: int, prev: str) -> tuple[bytes, str]:
    """The complete line of a record (``body``: its JSON object before the chain member, open)
    as record ``seq`` of ``stream`` after the record whose hash is ``prev``, and its hash.
    Deterministic, so that recovery rebuilds from the journal the line the copy would write."""
    body += b',"chain":{"stream":"%s","seq":%d,"prev":"%s"}' % (stream, seq, prev.encode())
    h = hashlib.sha256(body)
    h.update(b"}")
    digest = h.hexdigest()
    return b'%s,"hash":"%s"}\n' % (body, digest.encode()), digest


def chained_line(line: bytes) -> tuple[int, str, str, str] | None:
    """``(seq, prev, hash, event)`` of a whole record line whose hash matches its content, else None."""
    if not line.endswith(b"\n"):
        return None
    parts = split_hash(line[:-1])
    if parts is None or hashlib.sha256(parts[0]).hexdigest() != parts[1]:
        return None
    try:
        record = json.loads(parts[0])
        chain = record["chain"]
        return int(chain["seq"]), str(chain["prev"]), parts[1], str(record.get("event", ""))
    except (ValueError, KeyError, TypeError):
        return None


def continuation(entries: Iterable[Entry], stream: str, seq: int, digest: str) -> list[bytes]:
    """The lines that continue a chain whose last record is ``seq``/``digest``, chained from the
    journal ``entries``. Entries at or before ``seq`` are skipped (copied before their writer
    ended); the run stops at the first entry that is not the next or whose body is not the
    start of a JSON object."""
    run: list[bytes] = []
    name = stream.encode()
    for entry in entries:
        if entry.seq <= seq and not run:
            continue
        if entry.seq != seq + 1 or not _is_record_body(entry.body):
            break
        line, digest = chain_line(entry.body, name, entry.seq, digest)
        run.append(line)
        seq = entry.seq
    return run


def _is_record_body(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body + b"}"), dict)
    except ValueError:
        return False


def _lock_stream(stream_dir: Path, busy: str) -> int:
    """The stream's lock, held until the returned descriptor is closed; ``busy`` if another has it."""
    fd = os.open(stream_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DecisionLogError(busy) from None
    return fd


def recover_journal(
    stream_dir: Path, path: Path, tip: ChainTip, journal: Journal
) -> tuple[ChainTip, int, Journal]:
    """Append to the segment ``path`` the records ``journal`` holds beyond ``tip``: those a
    process that ended without closing the stream had stored, and forwarded, but not yet
    copied. Returns the new tip, how many records were recovered, and the journal to go on
    with (a fresh one when this one was kept aside).

    Only entries that continue the chain exactly are taken, chained as the copy would have.
    If the segment ends with a cut record (the copy was interrupted), its bytes must be the
    start of the first recovered line; the cut is then completed by that line. Otherwise
    nothing is touched and the journal is kept aside for the auditor, as is a journal in a
    format this version does not read."""
    if journal.foreign:
        journal, aside = _keep_aside(stream_dir, journal)
        log.error(
            "the decision log journal is not in a format this version of pgwarden reads; it is kept in %s",
            aside,
            extra={"event": "decision_log_recovery_failed"},
        )
        return tip, 0, journal
    run = continuation(journal.pending(), stream_dir.name, tip.seq, tip.hash)
    if not run:
        return tip, 0, journal
    found = chained_line(run[-1])
    assert found is not None  # chain_line made it
    seq, _, digest, event = found
    with open(path, "r+b") as f:
        if tip.torn_bytes:
            f.seek(-tip.torn_bytes, os.SEEK_END)
            if not run[0].startswith(f.read()):
                journal, aside = _keep_aside(stream_dir, journal)
                log.error(
                    "the decision log segment %s ends with a cut record that is not in the journal; "
                    "%d journal record(s) were not recovered and are kept in %s",
                    path,
                    len(run),
                    aside,
                    extra={"event": "decision_log_recovery_failed"},
                )
                return tip, 0, journal
            f.truncate(f.seek(-tip.torn_bytes, os.SEEK_END))
        f.seek(0, os.SEEK_END)
        f.write(b"".join(run))
        f.flush()
        os.fsync(f.fileno())
    log.warning(
        "recovered %d decision log record(s) from the journal into %s (its writer did not close it)",
        len(run),
        path,
        extra={"event": "decision_log_recovered"},
    )
    return ChainTip(seq, digest, event, 0), len(run), journal


def _keep_aside(stream_dir: Path, journal: Journal) -> tuple[Journal, Path]:
    """Move the journal aside for the auditor, untouched; a new, empty one replaces it."""
    aside = stream_dir / f"{JOURNAL}.unrecovered-{int(time.time())}"
    os.replace(journal.path, aside)
    journal.close()
    return Journal(stream_dir / JOURNAL), aside


def recover_stream(stream_dir: Path) -> int:
    """Recover a stream whose gateway is not running (``pgwarden audit recover``): the records
    of its journal not yet in its last segment are appended to it. Returns how many."""
    lock_fd = _lock_stream(
        stream_dir,
        f"a gateway is writing the decision log stream {stream_dir}; it recovers its journal itself "
        "when it starts",
    )
    try:
        segments = segments_of(stream_dir)
        if not segments or not (stream_dir / JOURNAL).exists():
            return 0
        path = segments[-1][1]
        tip = read_tip(path)
        if tip is None:
            raise DecisionLogError(f"the last segment {path} has no whole record to chain on")
        journal = Journal(stream_dir / JOURNAL)
        try:
            _, count, journal = recover_journal(stream_dir, path, tip, journal)
            if count:
                journal.reset()
        finally:
            journal.close()
        return count
    finally:
        os.close(lock_fd)


class DecisionLog:
    """Appends records to this process's chain (or keeps them in memory when ``directory`` is None)."""

    def __init__(
        self,
        directory: Path | None,
        *,
        stream: str = "",
        labels: dict[str, str] | None = None,
        rotate_size: int = 64 * 1024 * 1024,
        fsync: str = "interval",
        fsync_interval: float = 1.0,
        retention: float | None = None,
        fail_open: bool = False,
    ) -> None:
        self.directory = directory
        self.stream = stream
        self.labels = labels or {}
        self._labels_json: tuple[dict[str, str] | None, str] = (None, "")
        self.rotate_size = rotate_size
        self.fsync_mode = fsync
        self.fsync_interval = fsync_interval
        self.retention = retention
        #: Forward statements whose record could not be written (audit.decision_log.on_failure: forward).
        self.fail_open = fail_open
        self.memory: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._seq = 0
        self._prev = GENESIS
        self._segment = 0
        self._size = 0
        self._last_fsync = time.monotonic()
        self._dirty = False
        #: fsync: interval is left to a thread calling :meth:`flush` (the gateway's), never done
        #: inline on the data path, where one fdatasync stalls every session for milliseconds.
        self.sync_in_background = False
        #: Records in the journal and not yet chained into the segment, in order: the body of
        #: record ``_seq + i + 1`` (:meth:`_copy` chains them).
        self._unwritten: list[bytes] = []
        self._unwritten_size = 0
        self._journal: Journal | None = None
        #: Set by the gateway: asks its event loop to call :meth:`write_pending` soon. Without
        #: it (tools, tests), every record is copied into the segment before the call returns.
        self.copy_soon: Callable[[], None] | None = None
        self._copy_scheduled = False
        #: Records the last start recovered from the journal (a crashed process had not copied them).
        self.recovered = 0
        if directory is None:
            return
        if not stream:
            raise ValueError("a decision log on disk needs a stream name")
        self.stream_dir = directory / stream
        self._stream_name = stream.encode()
        try:
            self.stream_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_stream(
                self.stream_dir,
                f"another gateway process is writing the decision log stream {self.stream_dir}; "
                "give each gateway its own audit.instance",
            )
            self._journal = Journal(self.stream_dir / JOURNAL)
            self._resume()
        except OSError as exc:
            raise DecisionLogError(
                f"cannot open the decision log {self.stream_dir}: {exc.strerror or exc}"
            ) from None

    @property
    def writable(self) -> bool:
        """False after a write error closed the chain (every later statement is refused)."""
        return self.directory is None or self._fd is not None

    @property
    def path(self) -> Path | None:
        """The segment being written."""
        if self.directory is None:
            return None
        return self.stream_dir / f"{self._segment:06d}{SEGMENT_SUFFIX}"

    # ------------------------------------------------------------------ start and rotation
    def _resume(self) -> None:
        """Continue the stream's chain in a new segment (a process never appends to an old one)."""
        segments = segments_of(self.stream_dir)
        previous: dict[str, Any] | None = None
        if segments:
            number, path = segments[-1]
            tip = read_tip(path)
            if tip is None:
                raise DecisionLogError(
                    f"the last segment {path} has no whole record to chain on; run `pgwarden audit verify` "
                    "and move the damaged segment aside"
                )
            assert self._journal is not None
            tip, self.recovered, self._journal = recover_journal(self.stream_dir, path, tip, self._journal)
            self._seq, self._prev, self._segment = tip.seq, tip.hash, number
            previous = {"segment": number, "closed": tip.event == "close", "torn_bytes": tip.torn_bytes}
            if self.recovered:
                previous["recovered"] = self.recovered
        assert self._journal is not None
        self._journal.reset()
        self._open_segment(previous)

    def _open_segment(self, previous: dict[str, Any] | None) -> None:
        self._segment += 1
        path = self.path
        assert path is not None
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        header: dict[str, Any] = {
            "event": "segment",
            "timestamp": rfc3339(time.time()),
            "segment": self._segment,
            "pid": os.getpid(),
            "labels": self.labels,
        }
        if previous is not None:
            header["previous"] = previous
        self._append([json.dumps(header, separators=(",", ":"))[:-1].encode()])
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.stream_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        assert self._fd is not None
        self._append(None)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        previous = {"segment": self._segment, "rotated": True, "torn_bytes": 0}
        self._open_segment(previous)
        if self.retention is not None:
            self._apply_retention()

    def _apply_retention(self) -> None:
        """Delete whole segments older than the retention, oldest first, leaving an anchor for each."""
        assert self.retention is not None
        cutoff = time.time() - self.retention
        for number, path in segments_of(self.stream_dir):
            if number >= self._segment - 1 or path.stat().st_mtime >= cutoff:
                return
            tip = read_tip(path)
            if tip is None:
                return  # damaged: keep it for the auditor
            anchor = {
                "stream": self.stream,
                "segment": number,
                "last_seq": tip.seq,
                "last_hash": tip.hash,
                "deleted_at": rfc3339(time.time()),
            }
            # The anchor goes into the chain first, so that the anchors file cannot be forged later.
            self._append([json.dumps({"event": "retention", **anchor}, separators=(",", ":"))[:-1].encode()])
            with open(self.stream_dir / ANCHORS, "a", encoding="utf-8") as f:
                f.write(json.dumps(anchor, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            path.unlink()

    # ------------------------------------------------------------------ writing
    def _stage(self, parts: list[bytes]) -> None:
        """Store one record (its body, in pieces) in the journal: it now survives this process.
        It is chained when it is copied into the segment. A record the journal cannot take is
        copied with those before it."""
        journal = self._journal
        assert journal is not None
        body = b"".join(parts)
        seq = self._seq + len(self._unwritten) + 1
        stored = journal.put(seq, body)
        if not stored:  # the ring is full of records not yet copied: copy them, then try again
            self._copy()
            stored = journal.put(seq, body)
        self._unwritten.append(body)
        self._unwritten_size += len(body)
        if not stored:  # larger than the whole ring: straight to the segment, before returning
            self._copy()

    def _append(self, parts: list[bytes] | None) -> None:
        """Stage one record (if given) and copy everything staged into the segment now."""
        if parts is not None:
            self._stage(parts)
        self._copy()

    def _copy(self) -> None:
        """Chain the staged records and write them to the segment, in one write(2)."""
        assert self._fd is not None
        self._copy_scheduled = False
        staged = self._unwritten
        if not staged:
            return
        self._unwritten = []
        self._unwritten_size = 0
        seq, prev, stream = self._seq, self._prev, self._stream_name
        pieces = []
        expected = 0
        for body in staged:
            seq += 1
            line, prev = chain_line(body, stream, seq, prev)
            pieces.append(line)
            expected += len(line)
        # The chain advances now: after a failed write nothing more is written (the records
        # are in the journal, and the next start recovers them with the same sequence numbers).
        self._seq, self._prev = seq, prev
        if len(pieces) > _MAX_IOVEC:
            pieces = [b"".join(pieces)]
        try:
            written = os.writev(self._fd, pieces)
        except OSError:
            # The chain advanced over lines that never reached the file: stop, as after a short write.
            self._fd = None
            raise
        if written != expected:
            # The chain cannot continue after a partial line: later records would chain on a
            # record that does not exist. Stop writing; every later statement is refused.
            self._fd = None
            raise DecisionLogError(f"short write to the decision log {self.path}")
        assert self._journal is not None
        self._journal.copied()
        self._size += written
        self._dirty = True
        if self.fsync_mode == "always" or (
            self.fsync_mode == "interval"
            and not self.sync_in_background
            and time.monotonic() - self._last_fsync >= self.fsync_interval
        ):
            os.fdatasync(self._fd)
            self._last_fsync = time.monotonic()
            self._dirty = False

    def _copy_and_rotate(self) -> None:
        self._copy()
        if self._size >= self.rotate_size:
            self._rotate()

    def _write_record(self, body_open: str) -> None:
        """Chain and write one record."""
        self._write_parts([body_open.encode()])

    def _write_parts(self, parts: list[bytes]) -> None:
        """Store one record in the journal; chained and copied into the segment now, or (with
        :attr:`copy_soon`) as soon as the caller is done forwarding."""
        if self.directory is None:
            self.memory.append(json.loads(b"".join(parts) + b"}"))
            return
        try:
            with self._lock:
                if self._fd is None:
                    raise DecisionLogError(f"the decision log {self.stream_dir} is closed after an error")
                self._stage(parts)
                self._copy_later()
        except OSError as exc:
            raise DecisionLogError(
                f"cannot write the decision log {self.path}: {exc.strerror or exc}"
            ) from None

    def _copy_later(self) -> None:
        if self.copy_soon is None or self.fsync_mode == "always":
            self._copy_and_rotate()
        elif not self._copy_scheduled:
            self._copy_scheduled = True
            self.copy_soon()

    def write_pending(self) -> None:
        """Copy what the journal holds into the segment (the gateway's loop calls this right
        after forwarding; the flusher calls it every few hundred ms for outcome records).
        Decision ids are formatted ahead here too, while the gateway waits for Postgres."""
        new_decision_id.top_up()
        if self.directory is None:
            return
        try:
            with self._lock:
                self._copy_scheduled = False
                if self._fd is not None and self._unwritten:
                    self._copy_and_rotate()
        except OSError as exc:
            raise DecisionLogError(
                f"cannot write the decision log {self.path}: {exc.strerror or exc}"
            ) from None

    def write(
        self,
        *,
        decision_id: str,
        input_json: str,
        result: dict[str, Any] | str,
        enforcement: dict[str, Any],
        metrics: dict[str, int],
    ) -> None:
        """Write one decision record. ``input_json`` is pre-serialised, and ``result`` may be too."""
        result_json = (
            result if isinstance(result, str) else json.dumps(result, separators=(",", ":"), default=str)
        )
        self.write_serialised(
            decision_id,
            decided_json(result_json, metrics, enforcement).encode(),
            (b'"input":', input_json.encode()),
        )

    def write_serialised(self, decision_id: str, decided: bytes, input_pieces: Sequence[bytes]) -> None:
        """Write one decision record from serialised pieces, stored in the journal without joining them.

        ``decided`` is the ``"result":…,"metrics":…,"enforcement":…,`` members (see
        :func:`decided_json`) and ``input_pieces`` the ``"input":…`` member; the gate keeps both
        per cached decision and statement, so that a cached use adds little more than an id, a
        timestamp and the statement text."""
        if self._labels_json[0] is not self.labels:
            self._labels_json = (self.labels, json.dumps(self.labels, separators=(",", ":")))
        head = (
            f'{{"event":"decision","decision_id":"{decision_id}","timestamp":"{now_rfc3339()}",'
            f'"path":"pgwarden/decision","labels":{self._labels_json[1]},'
        )
        self._write_parts([head.encode(), decided, *input_pieces])

    def write_outcome(
        self,
        *,
        decision_id: str,
        session: str,
        forwarded: bool,
        command_tag: str,
        rows: int | None,
        duration_ms: float,
        error: dict[str, str] | None,
    ) -> None:
        """What came of one decided statement (see :meth:`write_outcomes`)."""
        self.write_outcomes([Outcome(decision_id, session, forwarded, command_tag, rows, duration_ms, error)])

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Outcome records, in order, with one timestamp (they are written together).

        Stored in the journal and copied into the segment with the next decision record, a
        flush, or at 64 KiB: a statement's outcome is known only after it ran, so nothing waits
        on it, and one write per few statements instead of one per statement matters for
        prepared statements. The statement tracker hands over a batch at a time: at one client
        this work sits between a response and the next statement, so it is built here in one
        loop under one lock."""
        if not outcomes:
            return
        timestamp = now_rfc3339()
        bodies = []
        # Built by hand: this runs for every execution. Ids are the gateway's own (uuid, hex).
        for o in outcomes:
            err = "null" if o.error is None else json.dumps(o.error, separators=(",", ":"))
            rows = "null" if o.rows is None else int(o.rows)
            bodies.append(
                f'{{"event":"outcome","decision_id":"{o.decision_id}","timestamp":"{timestamp}",'
                f'"session":"{o.session}","forwarded":{"true" if o.forwarded else "false"},'
                f'"command_tag":{json_string(o.command_tag)},"rows":{rows},'
                f'"duration_ms":{round(o.duration_ms, 3)},"error":{err}'.encode()
            )
        if self.directory is None:
            self.memory.extend(json.loads(body + b"}") for body in bodies)
            return
        try:
            with self._lock:
                if self._fd is None:
                    raise DecisionLogError(f"the decision log {self.stream_dir} is closed after an error")
                for body in bodies:
                    self._stage([body])
                if self._unwritten_size >= _DEFER_BYTES:
                    self._copy_and_rotate()
        except OSError as exc:
            raise DecisionLogError(
                f"cannot write the decision log {self.path}: {exc.strerror or exc}"
            ) from None

    def write_approval(self, event: dict[str, Any]) -> None:
        """An approval event (requested, approved, rejected, timed_out, withdrawn, executed, ...)."""
        record = {"event": "approval", "timestamp": rfc3339(time.time()), "approval": event}
        self._write_record(json.dumps(record, separators=(",", ":"), default=str)[:-1])

    def flush(self) -> None:
        """fsync what was written (the interval policy's timer and shutdown call this).

        The fsync itself runs outside the lock, on a duplicate of the descriptor: the gateway
        calls this from a thread, and records go on being appended while the disk catches up
        (a rotation meanwhile closes the original, which it fsyncs itself)."""
        with self._lock:
            if self._fd is not None and self._unwritten:
                self._copy()
            if self._fd is None or not self._dirty:
                return
            fd = os.dup(self._fd)
            self._dirty = False
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._dirty = True
            what = exc.strerror or exc
            raise DecisionLogError(f"cannot fsync the decision log {self.path}: {what}") from None
        finally:
            os.close(fd)
        self._last_fsync = time.monotonic()

    def close(self) -> None:
        """End the stream cleanly: a ``close`` record tells verify that nothing after it is missing."""
        if self.directory is None:
            return
        with self._lock:
            if self._fd is not None:
                try:
                    close = {"event": "close", "timestamp": rfc3339(time.time())}
                    self._append([json.dumps(close, separators=(",", ":"))[:-1].encode()])
                    os.fsync(self._fd)
                finally:
                    if self._fd is not None:
                        os.close(self._fd)
                    self._fd = None
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
