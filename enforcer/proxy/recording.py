"""Statement tracking for the audit trail: which response belongs to which statement.

Owns: following each recorded statement (a simple Query, or an extended-protocol
Execute, or a refused Parse) from the moment it is decided to the response that
completes it, then writing what came of it: an ``outcome`` record in the
decision log and a statement event in the session recording.
Never: changes a byte of the traffic; it only watches the frames the client
receives (after refusals are swapped in and results transformed).

Postgres answers in order, and the relay already counts request/response
cycles (each Query or Sync opens one that a ReadyForQuery closes), so a unit is
tied to the cycle it was sent in: CommandComplete, EmptyQueryResponse,
PortalSuspended or ErrorResponse completes an Execute; a Query completes at
its ReadyForQuery; anything still open at ReadyForQuery was skipped after an
error and is recorded as not executed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enforcer.audit.decision_log import DecisionLogError, Outcome
from enforcer.audit.sessions import StatementEvent
from enforcer.wire import BindHead, DataRow, ErrorResponse, Execute, Parse, Query, RowDescription

if TYPE_CHECKING:
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.audit.sessions import SessionRecorder
    from enforcer.config import SessionRecordingConfig
    from enforcer.proxy.gate import Verdict

log = logging.getLogger("pgwarden.audit")

_C, _I, _SUSPENDED, _E, _Z, _T, _D = (ord(c) for c in "CIsEZTD")
#: Backend frames the tracker must see; RowDescription/DataRow only when rows are recorded.
COMPLETION_TYPES = frozenset((_C, _I, _SUSPENDED, _E, _Z))
ROW_TYPES = frozenset((_T, _D))
#: Reports processed together at most this long after the first of them, or once this many wait.
_DRAIN_DELAY = 0.02
_BATCH = 256
_ROW_TAGS = ("SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE")


@dataclass(slots=True)
class _StatementInfo:
    sql: str
    decision_id: str
    action: str
    reasons: tuple[str, ...]
    masked: tuple[str, ...] = ()


@dataclass(slots=True)
class _Unit:
    seq: int
    cycle: int
    execute: bool
    info: _StatementInfo
    forwarded: bool
    started: float
    t0: float
    protocol: str
    tags: list[str] = field(default_factory=list)
    rows: int | None = None
    error: tuple[str, str] | None = None
    columns: list[str] | None = None
    result_rows: list[list[str | None]] | None = None
    truncated: bool = False


def _rows_of(tag: str) -> int | None:
    parts = tag.split()
    if parts and parts[0] in _ROW_TAGS and parts[-1].isdigit():
        return int(parts[-1])
    return None


class StatementTracker:
    def __init__(
        self,
        session_id: str,
        *,
        recorder: SessionRecorder | None,
        decision_log: DecisionLog | None,
        rows: SessionRecordingConfig | None = None,
    ) -> None:
        self.session_id = session_id
        self.recorder = recorder
        self.decision_log = decision_log
        self.record_rows = bool(rows and rows.record_rows and recorder is not None)
        self.max_rows = rows.max_rows_per_statement if rows else 0
        self.bytes_left = rows.max_bytes_per_session if rows else 0
        self.watch = COMPLETION_TYPES | ROW_TYPES if self.record_rows else COMPLETION_TYPES
        self.units: deque[_Unit] = deque()
        self.statements: dict[str, _StatementInfo | None] = {}
        self.portals: dict[str, _StatementInfo | None] = {}
        self.seq = 0
        #: Reports not yet processed, in stream order (see :meth:`drain`).
        self._queue: list[tuple[Any, ...]] = []
        #: Outcome records of the statements completed by this drain, written together at its end.
        self._outcomes: list[Outcome] = []
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drain_soon = False
        #: The event loop, taken once: asyncio.get_running_loop() costs a getpid(2) call on
        #: Python 3.11, and this runs twice per statement.
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ what the relay reports
    # The relay reports in stream order and the reports wait in a queue. They are processed
    # when the relay has forwarded what the client sent (:meth:`drain_soon`), that is while
    # Postgres works on it; otherwise in batches (every few milliseconds, or every _BATCH
    # reports). A 20 ms batch held one client's next statement up for most of a millisecond
    # once per batch; processed right after a socket write to the client, the bookkeeping ran
    # with cold caches and delayed the next statement instead. Times are taken when reported,
    # so durations are those the client saw.
    def message(self, msg: Query | Parse | BindHead | Execute, verdict: Verdict, cycle: int) -> None:
        """A decided frontend message, in stream order, with the cycle it belongs to."""
        self._queue.append((msg, verdict, cycle, time.time(), time.perf_counter()))
        self._schedule()

    def frames(self, frames: list[tuple[int, bytes]], cycle: int) -> None:
        """Frames the client receives (only types in :attr:`watch` matter), in order, starting while
        ``cycle`` responses were already complete; each ReadyForQuery completes one more."""
        self._queue.append((frames, cycle, time.perf_counter()))
        self._schedule()

    def backend(self, type_byte: int, payload: bytes, cycle: int) -> None:
        """One frame the client receives, while ``cycle`` responses were already complete."""
        self.frames([(type_byte, payload)], cycle)

    def _schedule(self) -> None:
        if len(self._queue) >= _BATCH:
            self.drain()
        elif self._drain_timer is None:
            loop = self._loop or self._running_loop()
            if loop is None:  # no event loop (a tool or a test driving the tracker): at once
                self.drain()
                return
            self._drain_timer = loop.call_later(_DRAIN_DELAY, self.drain)

    def drain_soon(self) -> None:
        """Process the queued reports on the event loop's next turn: the relay calls this when it
        has forwarded the client's statements and the gateway waits for Postgres."""
        if self._queue and not self._drain_soon:
            loop = self._loop or self._running_loop()
            if loop is None:
                self.drain()
                return
            self._drain_soon = True
            loop.call_soon(self.drain)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._loop

    def drain(self) -> None:
        """Process every report still queued (outcome records, session events)."""
        self._drain_soon = False
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        queue, self._queue = self._queue, []
        for item in queue:
            if len(item) == 5:  # (message, verdict, cycle, wall, now); frames are (frames, cycle, now)
                self._message(*item)
            else:
                frames, cycle, now = item
                for type_byte, payload in frames:
                    self._backend(type_byte, payload, cycle, now)
                    if type_byte == _Z:
                        cycle += 1
        self._write_outcomes()

    def _write_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes or self.decision_log is None:
            return
        try:
            self.decision_log.write_outcomes(outcomes)
        except DecisionLogError as exc:
            log.error(
                "%s (%d outcome record(s) lost, the first of decision %s)",
                exc,
                len(outcomes),
                outcomes[0].decision_id,
                extra={"event": "decision_log_failed"},
            )

    # ------------------------------------------------------------------ frontend side
    def _message(
        self, msg: Query | Parse | BindHead | Execute, verdict: Verdict, cycle: int, wall: float, now: float
    ) -> None:
        if isinstance(msg, Query):
            self._open(
                cycle, False, self._info(msg.sql, verdict), verdict.refusal is None, "simple", wall, now
            )
        elif isinstance(msg, Parse):
            info = self._info(msg.query, verdict)
            if verdict.refusal is None:
                self.statements[msg.name] = info
            else:
                self.statements.pop(msg.name, None)
                self._open(cycle, True, info, False, "extended", wall, now)
        elif isinstance(msg, BindHead):
            if verdict.refusal is None:
                self.portals[msg.portal] = self.statements.get(msg.statement)
        else:
            known = self.portals.get(msg.portal)
            if known is None:
                known = _StatementInfo(f"-- execute of unknown portal {msg.portal!r}", "", "", ())
            self._open(cycle, True, known, verdict.refusal is None, "extended", wall, now)

    @staticmethod
    def _info(sql: str, verdict: Verdict) -> _StatementInfo:
        return _StatementInfo(sql, verdict.decision_id, verdict.action, verdict.reasons, verdict.masked)

    def _open(
        self,
        cycle: int,
        execute: bool,
        info: _StatementInfo,
        forwarded: bool,
        protocol: str,
        wall: float,
        now: float,
    ) -> None:
        self.seq += 1
        self.units.append(_Unit(self.seq, cycle, execute, info, forwarded, wall, now, protocol))

    # ------------------------------------------------------------------ backend side
    def _backend(self, type_byte: int, payload: bytes, cycle: int, now: float) -> None:
        units = self.units
        unit = units[0] if units and units[0].cycle == cycle else None
        if type_byte == _Z:
            while units and units[0].cycle <= cycle:
                self._finish(units.popleft(), now)
            return
        if unit is None:
            return
        if type_byte == _D:
            self._row(unit, payload)
        elif type_byte == _C:
            tag = bytes(payload[:-1]).decode("utf-8", "replace")
            unit.tags.append(tag)
            n = _rows_of(tag)
            if n is not None:
                unit.rows = (unit.rows or 0) + n
            if unit.execute:
                self._finish(units.popleft(), now)
        elif type_byte in (_I, _SUSPENDED):
            if unit.execute:
                if type_byte == _SUSPENDED:
                    unit.tags.append("(portal suspended)")
                self._finish(units.popleft(), now)
        elif type_byte == _E:
            err = ErrorResponse.decode(bytes(payload))
            unit.error = (err.sqlstate or "", err.message)
            if unit.execute:
                self._finish(units.popleft(), now)
                # Postgres skips the rest of the batch: later Executes of this cycle never run.
                while units and units[0].cycle == cycle:
                    skipped = units.popleft()
                    skipped.error = ("", "not executed: an earlier message of the batch failed")
                    self._finish(skipped, now)
        elif type_byte == _T and self.record_rows:
            unit.columns = [f.name for f in RowDescription.decode(bytes(payload)).fields]

    def _row(self, unit: _Unit, payload: bytes | memoryview) -> None:
        if not self.record_rows or unit.truncated:
            return
        rows = unit.result_rows if unit.result_rows is not None else []
        unit.result_rows = rows
        if len(rows) >= self.max_rows or self.bytes_left <= 0:
            unit.truncated = True
            return
        values = [None if v is None else _shown(v) for v in DataRow.decode(bytes(payload)).values]
        self.bytes_left -= len(payload)
        rows.append(values)

    def _finish(self, unit: _Unit, now: float) -> None:
        duration_ms = (now - unit.t0) * 1000
        info = unit.info
        error = unit.error
        tag = "; ".join(unit.tags)
        if self.decision_log is not None and info.decision_id:
            self._outcomes.append(
                Outcome(
                    info.decision_id,
                    self.session_id,
                    unit.forwarded,
                    tag,
                    unit.rows,
                    duration_ms,
                    {"sqlstate": error[0], "message": error[1]} if error else None,
                )
            )
        if self.recorder is not None:
            self.recorder.put(
                StatementEvent(
                    session_id=self.session_id,
                    seq=unit.seq,
                    started_at=unit.started,
                    duration_ms=round(duration_ms, 3),
                    protocol=unit.protocol,
                    sql=info.sql,
                    decision_id=info.decision_id,
                    action=info.action,
                    reasons=list(info.reasons),
                    masked=list(info.masked),
                    forwarded=unit.forwarded,
                    command_tag=tag,
                    rows=unit.rows,
                    error_sqlstate=error[0] if error else "",
                    error_message=error[1] if error else "",
                    columns=unit.columns,
                    result_rows=unit.result_rows,
                    rows_truncated=unit.truncated,
                )
            )

    def close(self) -> None:
        """The session ended: statements still in flight are recorded without a result."""
        self.drain()
        now = time.perf_counter()
        while self.units:
            unit = self.units.popleft()
            if unit.error is None:
                unit.error = ("", "no result: the session ended before the statement completed")
            self._finish(unit, now)
        self._write_outcomes()


def _shown(raw: bytes) -> str:
    """A recorded value: text as text, binary-format values as \\x hex."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "\\x" + raw.hex()
