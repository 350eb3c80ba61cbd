"""The relay of an established session, driven by transport callbacks.

Owns: moving messages between the client and the upstream once both are
authenticated: every SQL-carrying frontend message through the gate, refusals
placed in order in the response stream, result transformers, transaction
status, flow control in both directions, idle timeouts, and ending the session.
Never: forwards a Query/Parse/Bind/Execute that the gate did not allow.

Callbacks (asyncio Protocols) rather than stream reader tasks: a proxy spends
its time moving small messages, and a callback per read avoids a task switch and
a future per message in each direction. Only a gate that returns an awaitable
(a policy backend doing I/O, an approval) costs a task, and then reading from the
client pauses until the decision is in, so later messages wait their turn.

Refusals keep Postgres's own semantics by construction: a refused message is
replaced upstream by a statement that fails to parse and carries a unique
marker; when upstream answers with that syntax error, the relay swaps it for
the refusal. Ordering, transaction abort (25P02 afterwards) and skip-until-Sync
are then exactly what Postgres does for any failed statement.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from enforcer import metrics
from enforcer.proxy.gate import ResultTransformer, SessionContext, StatementGate, Verdict
from enforcer.wire import (
    BindHead,
    ErrorResponse,
    Execute,
    Framer,
    MessageTooLarge,
    NoticeResponse,
    ParameterStatus,
    Parse,
    ProtocolError,
    Query,
    Terminate,
)

if TYPE_CHECKING:
    from enforcer.config import ListenerConfig
    from enforcer.proxy.busypoll import BusyPoll
    from enforcer.proxy.recording import StatementTracker

log = logging.getLogger("pgwarden.session")

# Frontend types forwarded without a decision: they carry no SQL text.
_PASSTHROUGH = frozenset(b"DSHCdcf")
_Q, _P, _B, _E, _F, _X, _SYNC = (ord(c) for c in "QPBEFXS")
_READY, _ERROR, _PARAM_STATUS = ord("Z"), ord("E"), ord("S")
_REFUSAL_MARKER = "pgwarden_refused_"
_TERMINATE = Terminate().encode()
_DECODERS: dict[int, Callable[[bytes], Query | Parse | BindHead | Execute]] = {
    _Q: Query.decode,
    _P: Parse.decode,
    _B: BindHead.decode,  # names only: see BindHead
    _E: Execute.decode,
}

GATE_FAILURE = ErrorResponse.build(
    "XX000",
    "pgwarden could not decide on this statement, so it was not forwarded (fail closed)",
    hint="The gateway log has the cause.",
)
FUNCTION_CALL_REFUSED = ErrorResponse.build(
    "0A000",
    "function call messages are not supported through pgwarden: "
    "they carry no SQL that a policy can decide on",
    hint="Call the function with SELECT instead.",
)


class _Side(asyncio.Protocol):
    """Forwards one transport's callbacks to the relay."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[], None],
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        # The relay's own method, not a wrapper: one Python call less per read.
        self.data_received = on_data  # type: ignore[method-assign,assignment]
        self._on_lost = on_lost
        self._on_pause = on_pause
        self._on_resume = on_resume

    def data_received(self, data: bytes) -> None:  # replaced per instance in __init__
        raise NotImplementedError

    def pause_writing(self) -> None:
        self._on_pause()

    def resume_writing(self) -> None:
        self._on_resume()

    def eof_received(self) -> bool:
        self._on_lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


class Relay:
    def __init__(
        self,
        *,
        ctx: SessionContext,
        gate: StatementGate,
        listener: ListenerConfig,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        event: Callable[..., None],
        expires_at: float | None = None,
        tracker: StatementTracker | None = None,
        busy_poll: BusyPoll | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.busy_poll = busy_poll
        self.ctx = ctx
        self.gate = gate
        self.listener = listener
        self.client = client
        self.upstream = upstream
        self.event = event
        self.done: asyncio.Future[str] = self.loop.create_future()
        self.cframer = Framer(max_message=listener.max_message_size)
        self.uframer = Framer(max_message=1 << 30)
        self.statements = 0
        self.refused = 0
        # Response-stream bookkeeping: every Query, Sync and FunctionCall sent upstream
        # opens a cycle that exactly one ReadyForQuery closes.
        self.cycles_sent = 0
        self.cycles_done = 0
        self.pending_refusals: dict[str, ErrorResponse] = {}
        self.transformers: dict[int, ResultTransformer] = {}
        self.deciding = False
        self.backlog = bytearray()
        self._client_pauses: set[str] = set()
        self.last_activity = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._decision_task: asyncio.Task[None] | None = None
        #: Wall-clock time after which the identity's token (plus grace) no longer covers the session.
        self.expires_at = expires_at
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expired = False
        #: Follows statements to their results for the audit trail (None: nothing records them).
        self.tracker = tracker
        ctx.notice = self._notice

    def _notice(self, text: str) -> None:
        if not self.client.is_closing():
            self.client.write(NoticeResponse.build("00000", text, severity="NOTICE").encode())

    def start(self, client_pending: bytes, upstream_pending: bytes) -> None:
        self.client.set_protocol(
            _Side(
                self.from_client, self._client_lost, self.upstream.pause_reading, self.upstream.resume_reading
            )
        )
        self.upstream.set_protocol(
            _Side(
                self.from_upstream,
                self._upstream_lost,
                lambda: self._pause_client("upstream-backpressure"),
                lambda: self._resume_client("upstream-backpressure"),
            )
        )
        if self.listener.idle_timeout or self.listener.idle_in_transaction_timeout:
            self._arm_idle_timer()
        if self.expires_at is not None:
            self._expiry_timer = self.loop.call_later(
                max(self.expires_at - time.time(), 0), self._token_expired
            )
        if upstream_pending:
            self.from_upstream(upstream_pending)
        if client_pending:
            self.from_client(client_pending)

    # ------------------------------------------------------------------ ending
    def _finish(self, reason: str) -> None:
        if self.done.done():
            return
        # Set first: closing a transport can call connection_lost, which calls back here.
        self.done.set_result(reason)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        if self._decision_task is not None and not self._decision_task.done():
            self._decision_task.cancel()
        if not self.upstream.is_closing():
            self.upstream.write(_TERMINATE)
            self.upstream.close()
        self.client.close()
        if self.tracker is not None:
            self.tracker.close()

    def fatal(self, sqlstate: str, message: str, reason: str) -> None:
        """Tell the client why (FATAL), then end the session."""
        if self.done.done():
            return
        if not self.client.is_closing():
            self.client.write(ErrorResponse.build(sqlstate, message, severity="FATAL").encode())
        self._finish(reason)

    def _client_lost(self) -> None:
        self._finish("client disconnected")

    def _upstream_lost(self) -> None:
        if self.done.done():
            return
        self.event("upstream_lost", logging.WARNING)
        metrics.UPSTREAM_ERRORS.labels(connection=self.ctx.connection, kind="lost").inc()
        self.fatal(
            "08006", "the upstream server closed the connection unexpectedly", "upstream connection lost"
        )

    # ------------------------------------------------------------------ token expiry
    def _token_expired(self) -> None:
        """The token ran out: end the session now if idle, else when the running statement completes."""
        self._expired = True
        if self.cycles_sent == self.cycles_done and not self.deciding:
            self._end_expired()

    def _end_expired(self) -> None:
        self.event("token_expired", logging.INFO)
        self.fatal(
            "28000",
            "the token of this session has expired; reconnect with a new token",
            "token expired",
        )

    # ------------------------------------------------------------------ flow control
    def _pause_client(self, why: str) -> None:
        if not self._client_pauses:
            self.client.pause_reading()
        self._client_pauses.add(why)

    def _resume_client(self, why: str) -> None:
        self._client_pauses.discard(why)
        if not self._client_pauses and not self.client.is_closing():
            self.client.resume_reading()

    # ------------------------------------------------------------------ idle timeouts
    def _arm_idle_timer(self) -> None:
        timeouts = [t for t in (self.listener.idle_timeout, self.listener.idle_in_transaction_timeout) if t]
        self._idle_timer = self.loop.call_later(min(timeouts), self._check_idle)

    def _check_idle(self) -> None:
        if self.done.done():
            return
        in_tx = self.ctx.transaction_status != "I"
        timeout = self.listener.idle_in_transaction_timeout if in_tx else self.listener.idle_timeout
        outstanding = self.cycles_sent != self.cycles_done or self.deciding
        quiet = self.loop.time() - self.last_activity
        if timeout and not outstanding and quiet >= timeout:
            if in_tx:
                self.fatal(
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout (pgwarden)",
                    "idle in transaction timeout",
                )
            else:
                self.fatal(
                    "57P05", "terminating connection due to idle-session timeout (pgwarden)", "idle timeout"
                )
            return
        timeouts = [t for t in (self.listener.idle_timeout, self.listener.idle_in_transaction_timeout) if t]
        wait = min(timeouts)
        if timeout and not outstanding:
            wait = max(timeout - quiet, 0.01)
        self._idle_timer = self.loop.call_later(wait, self._check_idle)

    # ------------------------------------------------------------------ client -> upstream
    def from_client(self, data: bytes) -> None:
        if self.done.done():
            return
        if self.deciding:
            # Keep reading while a decision is pending (an approval can take minutes): that is how a
            # client that disconnects is noticed, and its held statement withdrawn. Stop reading
            # only once the backlog is as large as the largest message we would accept.
            self.backlog += data
            if len(self.backlog) > self.listener.max_message_size:
                self._pause_client("backlog")
            return
        self.last_activity = self.loop.time()
        if self.busy_poll is not None:
            self.busy_poll.kick()
        self._process_client_frames(data)
        if self.tracker is not None:
            self.tracker.drain_soon()  # while Postgres runs what was just forwarded

    def _process_client_frames(self, data: bytes | None = None) -> None:
        """Decide and forward every complete frame (of what the framer holds, and ``data`` just
        read); forwards the received bytes as they are when every frame passes unchanged (the
        common case: the very bytes object read), rebuilding only around refusals."""
        try:
            framer = self.cframer
            chunk, spans = framer.take_all_complete() if data is None else framer.feed_and_take(data)
        except MessageTooLarge as exc:
            limit = "the limit is listener.max_message_size on the gateway"
            self.fatal("08P01", f"{exc}; {limit}", "oversized message")
            return
        except ProtocolError as exc:
            self.fatal("08P01", f"protocol violation: {exc}", "protocol violation")
            return
        out: bytearray | None = None  # set once a frame is replaced; chunk[done:] is still to copy
        done = 0
        for type_byte, start, end in spans:
            if type_byte in _PASSTHROUGH:
                if type_byte == _SYNC:
                    self.cycles_sent += 1
                continue
            frame_start = start - 5
            decoder = _DECODERS.get(type_byte)
            if decoder is not None:
                try:
                    msg = decoder(chunk[start:end])
                except ProtocolError as exc:
                    self._forward(chunk, out, done, frame_start)
                    what = f"invalid {chr(type_byte)!r} message: {exc}"
                    self.fatal(exc.sqlstate, what, "protocol violation")
                    return
                try:
                    decided = self.gate.decide(self.ctx, msg)
                except Exception as exc:  # fail closed: a gate that breaks refuses
                    self.event("gate_error", logging.ERROR, error=repr(exc))
                    decided = Verdict(refusal=GATE_FAILURE)
                if not isinstance(decided, Verdict):
                    # The gate needs time (I/O, a human): forward what is decided, hold the rest.
                    self._forward(chunk, out, done, frame_start)
                    # Everything after this frame waits, in stream order: the rest of this chunk,
                    # then the incomplete tail still in the framer, then whatever arrives meanwhile.
                    self.backlog[:0] = chunk[end:] + self.cframer.take_rest()
                    self.deciding = True
                    raw = chunk[frame_start:end]
                    self._decision_task = self.loop.create_task(
                        self._await_decision(decided, msg, type_byte, raw)
                    )
                    return
                if decided.refusal is None and not decided.notices and decided.replacement is None:
                    self._apply(decided, msg, type_byte, b"")  # bookkeeping only; the bytes stay as sent
                    continue
                replacement = self._apply(decided, msg, type_byte, chunk[frame_start:end])
            elif type_byte == _F:
                self.refused += 1
                replacement = self._stand_in(FUNCTION_CALL_REFUSED, simple=True)
                self.cycles_sent += 1
            elif type_byte == _X:
                self._forward(chunk, out, done, end)
                self._finish("client terminated")
                return
            else:
                self._forward(chunk, out, done, frame_start)
                self.fatal("08P01", f"invalid frontend message type {chr(type_byte)!r}", "protocol violation")
                return
            if out is None:
                out = bytearray()
            out += chunk[done:frame_start]
            out += replacement
            done = end
        self._forward(chunk, out, done, len(chunk))

    def _forward(self, chunk: bytes, out: bytearray | None, done: int, upto: int) -> None:
        """Send what is decided so far: ``out`` (rebuilt frames) then ``chunk[done:upto]``."""
        if out is None:
            if upto > done:
                self.upstream.write(chunk[done:upto] if done or upto < len(chunk) else chunk)
            return
        out += chunk[done:upto]
        if out:
            self.upstream.write(bytes(out))

    async def _await_decision(
        self, decided: Awaitable[Verdict], msg: Query | Parse | BindHead | Execute, type_byte: int, raw: bytes
    ) -> None:
        try:
            verdict = await _await_verdict(decided)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.event("gate_error", logging.ERROR, error=repr(exc))
            verdict = Verdict(refusal=GATE_FAILURE)
        if self.done.done():
            return
        self.upstream.write(self._apply(verdict, msg, type_byte, raw))
        self.deciding = False
        if self.backlog:
            self.cframer.feed(bytes(self.backlog))
            self.backlog.clear()
        self.last_activity = self.loop.time()
        self._process_client_frames()
        if not self.deciding:
            self._resume_client("backlog")

    def _apply(
        self, verdict: Verdict, msg: Query | Parse | BindHead | Execute, type_byte: int, raw: bytes
    ) -> bytes:
        """The bytes to send upstream for one decided message."""
        if type_byte in (_Q, _P):
            self.statements += 1
        if self.tracker is not None:
            self.tracker.message(msg, verdict, self.cycles_sent)
        for notice in verdict.notices:
            self.client.write(NoticeResponse.build("00000", notice, severity="NOTICE").encode())
        if verdict.refusal is None:
            if verdict.transformer is not None:
                self._add_transformer(verdict.transformer)
            data = raw if verdict.replacement is None else verdict.replacement
        else:
            self.refused += 1
            data = self._stand_in(verdict.refusal, simple=type_byte == _Q)
        if type_byte == _Q:
            self.cycles_sent += 1
        return data

    def _add_transformer(self, transformer: ResultTransformer) -> None:
        """Results of this cycle go through ``transformer``; a second one for the same cycle (several
        masked statements in one pipeline) is merged into the first when it knows how."""
        existing = self.transformers.get(self.cycles_sent)
        absorb = getattr(existing, "absorb", None)
        if existing is not None and absorb is not None and type(existing) is type(transformer):
            absorb(transformer)
        else:
            self.transformers[self.cycles_sent] = transformer

    def _stand_in(self, refusal: ErrorResponse, *, simple: bool) -> bytes:
        """Bytes to send upstream instead of a refused message: a statement that fails to parse."""
        marker = _REFUSAL_MARKER + secrets.token_hex(8)
        self.pending_refusals[marker] = refusal
        if simple:
            return Query(marker).encode()
        return Parse(marker, marker, ()).encode()

    # ------------------------------------------------------------------ upstream -> client
    def from_upstream(self, data: bytes) -> None:
        if self.done.done():
            return
        framer = self.uframer
        ctx = self.ctx
        if self.busy_poll is not None:
            self.busy_poll.kick()
        try:
            tracker = self.tracker
            if not self.pending_refusals and not self.transformers and not self._expired:
                chunk, spans = framer.feed_and_take(data)
                cycle = self.cycles_done
                for type_byte, start, end in spans:
                    if type_byte == _READY:
                        ctx.transaction_status = chr(chunk[start])
                        self.cycles_done += 1
                        self.last_activity = self.loop.time()
                    elif type_byte == _PARAM_STATUS:
                        self._track_parameter(chunk[start:end])
                        if self.done.done():  # a pinned setting changed: the client gets no more
                            return
                if chunk:
                    self.client.write(chunk)
                if tracker is not None:
                    watch = tracker.watch
                    picked = [(t, chunk[start:end]) for t, start, end in spans if t in watch]
                    if picked:
                        tracker.frames(picked, cycle)
                return
            framer.feed(data)
            out = bytearray()
            while (frame := framer.next_frame()) is not None:
                type_byte, payload, raw = frame
                swapped = False
                if type_byte == _ERROR and self.pending_refusals:
                    refusal = self._swap_refusal(payload, raw)
                    swapped = refusal is not raw
                    raw = refusal
                transformer = self.transformers.get(self.cycles_done)
                if transformer is not None and swapped:
                    # The gateway's own refusal is not upstream data: the transformer follows the
                    # stream (skip until Sync) but must not rewrite or withhold the refusal's text.
                    transformer.transform(type_byte, payload)
                    out += raw
                    if tracker is not None:
                        tracker.backend(type_byte, raw[5:], self.cycles_done)
                elif transformer is not None:
                    for t, p in transformer.transform(type_byte, payload):
                        out += bytes((t,)) + (len(p) + 4).to_bytes(4, "big") + p
                        if tracker is not None and t in tracker.watch:
                            tracker.backend(t, p, self.cycles_done)
                else:
                    out += raw
                    if tracker is not None and type_byte in tracker.watch:
                        tracker.backend(type_byte, raw[5:], self.cycles_done)
                if type_byte == _READY:
                    ctx.transaction_status = chr(payload[0])
                    self.transformers.pop(self.cycles_done, None)
                    self.cycles_done += 1
                    self.last_activity = self.loop.time()
                    if self.cycles_done == self.cycles_sent:
                        # Every refusal sent so far has been answered or skipped by a Sync.
                        self.pending_refusals.clear()
                        if self._expired:
                            self.client.write(bytes(out))
                            self._end_expired()
                            return
                elif type_byte == _PARAM_STATUS:
                    self._track_parameter(payload)
            if out:
                self.client.write(bytes(out))
        except ProtocolError as exc:
            self.event("upstream_protocol_error", logging.ERROR, error=str(exc))
            self.fatal("08P01", "the upstream server sent an invalid message", "upstream protocol error")

    def _swap_refusal(self, payload: bytes, raw: bytes) -> bytes:
        text = ErrorResponse.decode(payload).message
        for marker, refusal in self.pending_refusals.items():
            if marker in text:
                del self.pending_refusals[marker]
                return refusal.encode()
        return raw

    def _track_parameter(self, payload: bytes) -> None:
        msg = ParameterStatus.decode(bytes(payload))
        self.ctx.parameters[msg.name] = msg.value
        self.ctx.parameters_epoch += 1
        if not pinned_parameter_ok(msg.name, msg.value):
            # Something (a role default, RESET ALL, a function) changed how SQL is lexed. The gateway's
            # parse could now differ from Postgres's, so the session cannot continue.
            self.event("pinned_setting_changed", logging.ERROR, setting=msg.name, value=msg.value)
            self.fatal(
                "0A000",
                f"{msg.name} changed to {msg.value!r}; pgwarden requires client_encoding UTF8 and "
                "standard_conforming_strings on, so the session was ended",
                "pinned setting changed",
            )


def pinned_parameter_ok(name: str, value: str) -> bool:
    if name == "client_encoding":
        return value.upper() in ("UTF8", "UNICODE")
    if name == "standard_conforming_strings":
        return value == "on"
    return True


async def _await_verdict(decided: Awaitable[Verdict]) -> Verdict:
    if not inspect.isawaitable(decided):
        raise TypeError(f"gate returned {type(decided).__name__}, not a Verdict")
    verdict = await decided
    if not isinstance(verdict, Verdict):
        raise TypeError(f"gate returned {type(verdict).__name__}, not a Verdict")
    return verdict
