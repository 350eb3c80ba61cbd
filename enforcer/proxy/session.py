"""One client session: startup, authentication, upstream connection and relay.

Owns: the per-connection state machine around the wire codecs: TLS
negotiation, startup validation, client authentication, the relay in both
directions, refusals placed in order in the response stream, cancel keys,
timeouts and termination.
Never: forwards a SQL-carrying message that the gate has not allowed, or sends
the upstream credential or upstream authentication errors to the client.

Refusals keep Postgres's own semantics by construction: a refused message is
replaced upstream by a statement that fails to parse and carries a unique
marker; when upstream answers with that syntax error, the relay swaps it for
the refusal. Ordering, transaction abort (25P02 afterwards) and skip-until-Sync
are then exactly what Postgres does for any failed statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from enforcer.identity import AuthenticationFailed, Identity
from enforcer.proxy.cancel import CancelTarget
from enforcer.proxy.gate import ResultTransformer, SessionContext, Verdict
from enforcer.proxy.tls import ALPN_POSTGRESQL
from enforcer.proxy.upstream import UpstreamError, UpstreamLink, connect_upstream
from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    Bind,
    CancelRequest,
    ErrorResponse,
    Execute,
    Framer,
    GSSENCRequest,
    MessageTooLarge,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    ProtocolError,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
    decode_backend,
    decode_untyped,
    untyped_length,
)

if TYPE_CHECKING:
    from enforcer.proxy.server import Gateway

log = logging.getLogger("pgwarden.session")

TLS_HANDSHAKE_RECORD = 0x16
# Frontend types forwarded without a decision: they carry no SQL text.
_PASSTHROUGH = frozenset(b"DSHCdcf")
_Q, _P, _B, _E, _F, _X, _SYNC = (ord(c) for c in "QPBEFXS")
_READY, _ERROR, _PARAM_STATUS = ord("Z"), ord("E"), ord("S")
_STARTUP_PARAMS_NEVER_FORWARDED = frozenset({"user", "database", "replication", "options"})
_REFUSAL_MARKER = "pgwarden_refused_"
GATE_FAILURE = ErrorResponse.build(
    "XX000",
    "pgwarden could not decide on this statement, so it was not forwarded (fail closed)",
    hint="The gateway log has the cause.",
)


class SessionClosed(Exception):
    """Raised to end a session after the client has been told why."""


class ClientSession:
    def __init__(self, gateway: Gateway, sock: socket.socket, peer: str) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.sock = sock
        self.peer = peer
        self.id = uuid.uuid4().hex[:16]
        self.started = time.monotonic()
        self.tls = False
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.upstream: UpstreamLink | None = None
        self.ctx: SessionContext | None = None
        self.cancel_pid: int | None = None
        self.admitted = False
        self.statements = 0
        self.refused = 0
        self.closing_reason = "client disconnected"
        # Response-stream bookkeeping (see module docstring).
        self.cycles_sent = 0
        self.cycles_done = 0
        self.pending_refusals: dict[str, ErrorResponse] = {}
        self.transformers: dict[int, ResultTransformer] = {}
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------------ logging
    def _event(self, event: str, level: int = logging.INFO, **fields: object) -> None:
        fields.setdefault("session", self.id)
        fields.setdefault("client", self.peer)
        if self.ctx is not None:
            fields.setdefault("user", self.ctx.identity.subject)
            fields.setdefault("connection", self.ctx.connection)
        log.log(level, event, extra={"event": event, "fields": fields})

    # ------------------------------------------------------------------ entry point
    async def run(self) -> None:
        try:
            try:
                async with asyncio.timeout(self.config.listener.startup_timeout or None):
                    startup = await self._negotiate()
                    if startup is None:
                        return
                    await self._startup(startup)
            except TimeoutError:
                self._event("startup_timeout", logging.WARNING)
                await self._fatal(
                    "08006", "startup timed out: the client did not complete authentication in time"
                )
                return
            self._event(
                "session_started",
                tls=self.tls,
                application_name=self.ctx.application_name if self.ctx else "",
            )
            await self._relay()
        except SessionClosed:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            self.closing_reason = f"connection error: {exc.__class__.__name__}"
        except Exception:
            # A bug must not leave the client hanging or take other sessions down.
            self.closing_reason = "internal error"
            log.exception("session failed", extra={"event": "session_error", "fields": {"session": self.id}})
            with contextlib.suppress(SessionClosed):
                await self._fatal(
                    "XX000", "internal error in pgwarden; the session was closed (see the gateway log)"
                )
        except asyncio.CancelledError:
            self.closing_reason = "gateway shutting down"
            await self._fatal(
                "57P01", "terminating connection due to administrator command (gateway shutdown)"
            )
            raise
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        if self.admitted:
            self.gateway.admitted -= 1
        if self.cancel_pid is not None:
            self.gateway.cancels.unregister(self.cancel_pid)
        if self.upstream is not None:
            w = self.upstream.writer
            if not w.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    w.write(Terminate().encode())
                w.close()
        if self.writer is not None:
            self.writer.close()
        else:
            self.sock.close()
        if self.ctx is not None:
            self._event(
                "session_ended",
                reason=self.closing_reason,
                duration_s=round(time.monotonic() - self.started, 3),
                statements=self.statements,
                refused=self.refused,
            )

    # ------------------------------------------------------------------ pre-TLS phase (raw socket)
    async def _sock_read_exact(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        buf = bytearray()
        while len(buf) < n:
            chunk = await loop.sock_recv(self.sock, n - len(buf))
            if not chunk:
                raise SessionClosed
            buf += chunk
        return bytes(buf)

    async def _sock_peek(self) -> int:
        """Wait until the client sent something and return its first byte without consuming it."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = self.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                fut: asyncio.Future[None] = loop.create_future()
                fd = self.sock.fileno()
                loop.add_reader(fd, _resolve, fut)
                try:
                    await fut
                finally:
                    loop.remove_reader(fd)
                continue
            if not data:
                raise SessionClosed
            return data[0]

    def _sock_has_pending(self) -> bool:
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False

    async def _attach_streams(self, ssl_ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        protocol = asyncio.StreamReaderProtocol(reader)
        if ssl_ctx is None:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, self.sock)
        else:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                self.sock,
                ssl=ssl_ctx,
                ssl_handshake_timeout=self.config.listener.startup_timeout or None,
            )
        self.reader = reader
        self.writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self.tls = ssl_ctx is not None

    async def _read_untyped_stream(self) -> bytes:
        assert self.reader is not None
        length = untyped_length(await self.reader.readexactly(4))
        return await self.reader.readexactly(length - 4)

    async def _negotiate(self) -> StartupMessage | None:
        """Handle SSLRequest / GSSENCRequest / direct TLS / CancelRequest until a StartupMessage."""
        server_ctx = self.gateway.server_ssl
        while self.reader is None:
            first = await self._sock_peek()
            if first == TLS_HANDSHAKE_RECORD:
                if server_ctx is None:
                    self._event("direct_tls_refused", logging.WARNING)
                    raise SessionClosed
                await self._attach_streams(server_ctx)
                if self._alpn() != ALPN_POSTGRESQL:
                    self._event("direct_tls_without_alpn", logging.WARNING)
                    await self._fatal(
                        "08P01", "direct TLS connections must negotiate ALPN protocol 'postgresql'"
                    )
                    return None
                break
            try:
                length = untyped_length(await self._sock_read_exact(4))
                body = await self._sock_read_exact(length - 4)
                msg = decode_untyped(body)
            except ProtocolError as exc:
                await self._fatal(exc.sqlstate, f"invalid startup packet: {exc}")
                return None
            if isinstance(msg, SSLRequest):
                if server_ctx is None:
                    await asyncio.get_running_loop().sock_sendall(self.sock, b"N")
                    continue
                if self._sock_has_pending():
                    # Bytes after SSLRequest but before the handshake could be injected by a
                    # man in the middle (CVE-2021-23214); Postgres refuses them, so do we.
                    self._event("plaintext_before_tls", logging.WARNING)
                    await self._fatal("08P01", "received unencrypted data after SSL request")
                    return None
                await asyncio.get_running_loop().sock_sendall(self.sock, b"S")
                await self._attach_streams(server_ctx)
                alpn = self._alpn()
                if alpn not in (None, ALPN_POSTGRESQL):
                    await self._fatal("08P01", f"unsupported ALPN protocol {alpn!r}")
                    return None
                break
            if isinstance(msg, GSSENCRequest):
                await asyncio.get_running_loop().sock_sendall(self.sock, b"N")
                continue
            if isinstance(msg, CancelRequest):
                await self.gateway.handle_cancel(msg)
                return None
            await self._attach_streams(None)
            return msg
        # Inside TLS: the next packet is a StartupMessage or a CancelRequest.
        assert self.reader is not None
        try:
            body = await self._read_untyped_stream()
            msg = decode_untyped(body)
        except ProtocolError as exc:
            await self._fatal("08P01", f"invalid startup packet: {exc}")
            return None
        if isinstance(msg, CancelRequest):
            await self.gateway.handle_cancel(msg)
            return None
        if not isinstance(msg, StartupMessage):
            await self._fatal("08P01", f"unexpected {type(msg).__name__} after TLS was established")
            return None
        return msg

    def _alpn(self) -> str | None:
        assert self.writer is not None
        sslobj = self.writer.get_extra_info("ssl_object")
        return sslobj.selected_alpn_protocol() if sslobj is not None else None

    # ------------------------------------------------------------------ startup and authentication
    async def _startup(self, startup: StartupMessage) -> None:
        listener = self.config.listener
        if self.gateway.admitted >= listener.max_clients:
            self._event("too_many_clients", logging.WARNING)
            await self._fatal(
                "53300", f"sorry, too many clients already (listener.max_clients = {listener.max_clients})"
            )
        self.gateway.admitted += 1
        self.admitted = True
        params = dict(startup.params)
        unsupported = tuple(k for k in params if k.startswith("_pq_."))
        if startup.protocol & 0xFFFF != 0 or unsupported:
            # We speak 3.0; tell newer clients so they can fall back (as Postgres does).
            self._write(NegotiateProtocolVersion(0, unsupported).encode())
        user = params.get("user", "")
        if not user:
            await self._fatal("28000", "no user name specified in the startup packet")
        database = params.get("database") or user
        if "replication" in params and not listener.allow_replication:
            await self._fatal(
                "28000",
                "replication connections are not allowed through pgwarden "
                "(set listener.allow_replication to permit them)",
            )
        if params.get("options") and not listener.allow_options:
            await self._fatal(
                "28000",
                "the startup 'options' parameter is not allowed through pgwarden; "
                "set session settings with SQL (or set listener.allow_options)",
            )
        conn = self.config.connections.get(database)
        if conn is None:
            self._event("unknown_connection", logging.WARNING, database=database, user=user)
            await self._fatal(
                "3D000",
                f'connection "{database}" is not configured on this gateway; '
                f"use one of: {', '.join(sorted(self.config.connections))}",
            )
            raise AssertionError("unreachable")
        if not self.tls and not listener.insecure_loopback_dev:
            self._event("tls_required", logging.WARNING, user=user)
            await self._fatal(
                "28000",
                "TLS is required: connect with sslmode=require (or stronger); the token is a password "
                "and never travels in cleartext",
            )
        identity = await self._authenticate(user)
        forwarded = [
            (k, v)
            for k, v in startup.params
            if k not in _STARTUP_PARAMS_NEVER_FORWARDED and not k.startswith("_pq_.")
        ]
        if params.get("options") and listener.allow_options:
            forwarded.append(("options", params["options"]))
        if "replication" in params and listener.allow_replication:
            forwarded.append(("replication", params["replication"]))
        try:
            self.upstream = await connect_upstream(conn, forwarded)
        except UpstreamError as exc:
            self._event(
                "upstream_connect_failed", logging.WARNING, user=user, connection=conn.name, error=exc.message
            )
            await self._fatal(exc.sqlstate, exc.message)
        up = self.upstream
        assert up is not None
        self.ctx = SessionContext(
            session_id=self.id,
            identity=identity,
            connection=conn.name,
            database=conn.database,
            client_addr=self.peer,
            tls=self.tls,
            application_name=params.get("application_name", ""),
            transaction_status=up.status,
            parameters={p.name: p.value for p in up.parameters},
            startup_parameters=params,
        )
        self.cancel_pid, secret = self.gateway.cancels.register(
            CancelTarget(conn, up.process_id, up.secret_key)
        )
        out = bytearray(AuthenticationOk().encode())
        for p in up.parameters:
            out += p.encode()
        out += BackendKeyData(self.cancel_pid, secret).encode()
        out += ReadyForQuery(up.status).encode()
        self._write(bytes(out))

    async def _authenticate(self, user: str) -> Identity:
        assert self.reader is not None
        self._write(AuthenticationCleartextPassword().encode())
        framer = Framer(max_message=16 * 1024)
        while True:
            frame = framer.next_frame()
            if frame is not None:
                break
            data = await self.reader.read(16 * 1024)
            if not data:
                raise SessionClosed
            try:
                framer.feed(data)
            except ProtocolError as exc:
                await self._fatal("08P01", f"invalid password packet: {exc}")
        type_byte, payload, _ = frame
        if type_byte != ord("p"):
            await self._fatal(
                "08P01", f"expected a password message, received message type {chr(type_byte)!r}"
            )
        try:
            token = PasswordMessage.decode(payload).password()
        except ProtocolError:
            await self._fatal("08P01", "invalid password packet")
            raise AssertionError("unreachable") from None
        try:
            identity = await self.gateway.authenticator.authenticate(user, token)
        except AuthenticationFailed as exc:
            self._event("auth_failed", logging.WARNING, user=user, reason=exc.message)
            await self._fatal(exc.sqlstate, exc.message)
            raise AssertionError("unreachable") from None
        self._event("auth_ok", user=user, issuer=identity.issuer, groups=list(identity.groups))
        return identity

    # ------------------------------------------------------------------ relay
    async def _relay(self) -> None:
        assert self.upstream is not None
        up_task = asyncio.create_task(self._upstream_to_client(), name=f"u2c-{self.id}")
        down_task = asyncio.create_task(self._client_to_upstream(), name=f"c2u-{self.id}")
        try:
            done, _ = await asyncio.wait({up_task, down_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up_task, down_task):
                if not t.done():
                    t.cancel()
            await asyncio.gather(up_task, down_task, return_exceptions=True)
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(
                exc, SessionClosed | ConnectionError | asyncio.IncompleteReadError | ssl.SSLError
            ):
                raise exc

    async def _read_client(self) -> bytes:
        assert self.reader is not None
        listener = self.config.listener
        idle = listener.idle_timeout
        idle_tx = listener.idle_in_transaction_timeout
        if not idle and not idle_tx:
            return await self.reader.read(65536)
        while True:
            in_tx = self.ctx is not None and self.ctx.transaction_status != "I"
            limit = idle_tx if in_tx else idle
            if not limit:
                limit = 3600.0
            try:
                return await asyncio.wait_for(self.reader.read(65536), timeout=limit)
            except TimeoutError:
                outstanding = self.cycles_sent != self.cycles_done
                quiet = time.monotonic() - self.last_activity
                timeout = idle_tx if in_tx else idle
                if timeout and not outstanding and quiet >= timeout:
                    if in_tx:
                        self.closing_reason = "idle in transaction timeout"
                        await self._fatal(
                            "25P03", "terminating connection due to idle-in-transaction timeout (pgwarden)"
                        )
                    self.closing_reason = "idle timeout"
                    await self._fatal(
                        "57P05", "terminating connection due to idle-session timeout (pgwarden)"
                    )

    async def _client_to_upstream(self) -> None:
        assert self.upstream is not None and self.writer is not None and self.ctx is not None
        framer = Framer(max_message=self.config.listener.max_message_size)
        up_writer = self.upstream.writer
        gate = self.gateway.gate
        ctx = self.ctx
        while True:
            data = await self._read_client()
            if not data:
                self.closing_reason = "client disconnected"
                raise SessionClosed
            self.last_activity = time.monotonic()
            framer.feed(data)
            out = bytearray()
            while True:
                try:
                    frame = framer.next_frame()
                except MessageTooLarge as exc:
                    up_writer.write(bytes(out))
                    self.closing_reason = "oversized message"
                    await self._fatal(
                        "08P01", f"{exc}; the limit is listener.max_message_size on the gateway"
                    )
                    raise AssertionError("unreachable") from None
                except ProtocolError as exc:
                    up_writer.write(bytes(out))
                    self.closing_reason = "protocol violation"
                    await self._fatal("08P01", f"protocol violation: {exc}")
                    raise AssertionError("unreachable") from None
                if frame is None:
                    break
                type_byte, payload, raw = frame
                if type_byte in _PASSTHROUGH:
                    out += raw
                    if type_byte == _SYNC:
                        self.cycles_sent += 1
                    continue
                if type_byte in (_Q, _P, _B, _E):
                    try:
                        msg: Query | Parse | Bind | Execute
                        if type_byte == _Q:
                            msg = Query.decode(payload)
                        elif type_byte == _P:
                            msg = Parse.decode(payload)
                        elif type_byte == _B:
                            msg = Bind.decode(payload)
                        else:
                            msg = Execute.decode(payload)
                    except ProtocolError as exc:
                        up_writer.write(bytes(out))
                        self.closing_reason = "protocol violation"
                        await self._fatal(exc.sqlstate, f"invalid {chr(type_byte)!r} message: {exc}")
                        raise AssertionError("unreachable") from None
                    try:
                        decided = gate.decide(ctx, msg)
                        if isinstance(decided, Verdict):
                            verdict = decided
                        else:
                            if out:
                                up_writer.write(bytes(out))
                                out.clear()
                            verdict = await _await_verdict(decided)
                    except Exception as exc:  # fail closed: a gate that breaks refuses
                        self._event("gate_error", logging.ERROR, error=repr(exc))
                        verdict = Verdict(refusal=GATE_FAILURE)
                    if type_byte in (_Q, _P):
                        self.statements += 1
                    for notice in verdict.notices:
                        self._write(NoticeResponse.build("00000", notice, severity="NOTICE").encode())
                    if verdict.refusal is None:
                        out += raw
                        if verdict.transformer is not None:
                            self.transformers[self.cycles_sent] = verdict.transformer
                    else:
                        self.refused += 1
                        out += self._refusal_stand_in(verdict.refusal, simple=type_byte == _Q)
                    if type_byte == _Q:
                        self.cycles_sent += 1
                    continue
                if type_byte == _F:
                    self.refused += 1
                    out += self._refusal_stand_in(
                        ErrorResponse.build(
                            "0A000",
                            "function call messages are not supported through pgwarden: they carry no SQL "
                            "that a policy can decide on",
                            hint="Call the function with SELECT instead.",
                        ),
                        simple=True,
                    )
                    self.cycles_sent += 1
                    continue
                if type_byte == _X:
                    up_writer.write(bytes(out) + raw)
                    self.closing_reason = "client terminated"
                    raise SessionClosed
                up_writer.write(bytes(out))
                self.closing_reason = "protocol violation"
                await self._fatal("08P01", f"invalid frontend message type {chr(type_byte)!r}")
            if out:
                up_writer.write(bytes(out))
                if up_writer.transport.get_write_buffer_size() > 1 << 20:
                    await up_writer.drain()

    def _refusal_stand_in(self, refusal: ErrorResponse, *, simple: bool) -> bytes:
        """Bytes to send upstream instead of a refused message: a statement that fails to parse."""
        marker = _REFUSAL_MARKER + secrets.token_hex(8)
        self.pending_refusals[marker] = refusal
        if simple:
            return Query(marker).encode()
        return Parse(marker, marker, ()).encode()

    async def _upstream_to_client(self) -> None:
        assert self.upstream is not None and self.writer is not None and self.ctx is not None
        reader = self.upstream.reader
        writer = self.writer
        framer = Framer(max_message=1 << 30)
        ctx = self.ctx
        while True:
            data = await reader.read(65536)
            if not data:
                self.closing_reason = "upstream connection lost"
                self._event("upstream_lost", logging.WARNING)
                await self._fatal("08006", "the upstream server closed the connection unexpectedly")
            framer.feed(data)
            if not self.pending_refusals and not self.transformers:
                chunk, spans = framer.take_all_complete()
                for type_byte, start, _end in spans:
                    if type_byte == _READY:
                        ctx.transaction_status = chr(chunk[start])
                        self.cycles_done += 1
                        self.last_activity = time.monotonic()
                    elif type_byte == _PARAM_STATUS:
                        self._track_parameter(chunk[start:_end])
                if chunk:
                    writer.write(chunk)
            else:
                out = bytearray()
                while (frame := framer.next_frame()) is not None:
                    type_byte, payload, raw = frame
                    if type_byte == _ERROR and self.pending_refusals:
                        raw = self._swap_refusal(payload, raw)
                    transformer = self.transformers.get(self.cycles_done)
                    if transformer is not None:
                        for t, p in transformer.transform(type_byte, payload):
                            out += bytes((t,)) + (len(p) + 4).to_bytes(4, "big") + p
                    else:
                        out += raw
                    if type_byte == _READY:
                        ctx.transaction_status = chr(payload[0])
                        self.transformers.pop(self.cycles_done, None)
                        self.cycles_done += 1
                        self.last_activity = time.monotonic()
                        if self.cycles_done == self.cycles_sent:
                            # Every refusal sent so far has been answered or skipped by Sync.
                            self.pending_refusals.clear()
                    elif type_byte == _PARAM_STATUS:
                        self._track_parameter(payload)
                if out:
                    writer.write(bytes(out))
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()

    def _swap_refusal(self, payload: bytes, raw: bytes) -> bytes:
        err = decode_backend(_ERROR, payload)
        assert isinstance(err, ErrorResponse)
        text = err.message or ""
        for marker, refusal in self.pending_refusals.items():
            if marker in text:
                del self.pending_refusals[marker]
                return refusal.encode()
        return raw

    def _track_parameter(self, payload: bytes) -> None:
        assert self.ctx is not None
        msg = ParameterStatus.decode(bytes(payload))
        self.ctx.parameters[msg.name] = msg.value

    # ------------------------------------------------------------------ output helpers
    def _write(self, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(data)

    async def _fatal(self, sqlstate: str, message: str) -> None:
        """Send a FATAL error to the client and end the session."""
        frame = ErrorResponse.build(sqlstate, message, severity="FATAL").encode()
        try:
            if self.writer is not None:
                if not self.writer.is_closing():
                    self.writer.write(frame)
                    await asyncio.wait_for(self.writer.drain(), timeout=2)
            else:
                await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(self.sock, frame), timeout=2)
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            pass
        raise SessionClosed


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _await_verdict(decided: Awaitable[Verdict]) -> Verdict:
    if not inspect.isawaitable(decided):
        raise TypeError(f"gate returned {type(decided).__name__}, not a Verdict")
    verdict = await decided
    if not isinstance(verdict, Verdict):
        raise TypeError(f"gate returned {type(verdict).__name__}, not a Verdict")
    return verdict
