"""One client session: negotiation, startup, authentication, upstream connection.

Owns: the per-connection state machine up to an established session (TLS
negotiation on the raw socket, startup validation, client authentication, the
upstream connection, the cancel key), then hands both transports to the
:class:`~enforcer.proxy.relay.Relay`, and cleans up when it ends.
Never: sends the upstream credential or upstream authentication errors to the
client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
import uuid
from typing import TYPE_CHECKING

from enforcer import metrics
from enforcer.audit.sessions import SessionEnd, SessionStart
from enforcer.identity import AuthenticationFailed, Identity
from enforcer.proxy.cancel import CancelTarget
from enforcer.proxy.gate import SessionContext
from enforcer.proxy.recording import StatementTracker
from enforcer.proxy.relay import Relay, pinned_parameter_ok
from enforcer.proxy.tls import ALPN_POSTGRESQL
from enforcer.proxy.upstream import UpstreamError, UpstreamLink, connect_upstream
from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    CancelRequest,
    ErrorResponse,
    GSSENCRequest,
    NegotiateProtocolVersion,
    PasswordMessage,
    ProtocolError,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
    decode_untyped,
    untyped_length,
)

if TYPE_CHECKING:
    from enforcer.proxy.server import Gateway

log = logging.getLogger("pgwarden.session")

TLS_HANDSHAKE_RECORD = 0x16
_STARTUP_PARAMS_NEVER_FORWARDED = frozenset({"user", "database", "replication", "options"})
_MAX_PASSWORD_MESSAGE = 64 * 1024  # tokens are a few KiB at most
# SQL_ASCII means "no conversion": the UTF8 server's bytes arrive unchanged, so it is safe to pin UTF8.
_UTF8_NAMES = frozenset({"UTF8", "UNICODE", "SQLASCII", "AUTO"})


class SessionClosed(Exception):
    """Raised to end a session after the client has been told why."""


class ClientSession:
    def __init__(self, gateway: Gateway, sock: socket.socket, peer: str, channel: str = "postgres") -> None:
        self.gateway = gateway
        #: "postgres" (the TCP listener) or "mcp" (the local socket of `pgwarden mcp`).
        self.channel = channel
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
        self.closing_reason = "client disconnected"
        self.relay: Relay | None = None
        self.recording = False
        self.counted = False

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
            self._record_start()
            metrics.SESSIONS.labels(channel=self.channel).inc()
            metrics.SESSIONS_ACTIVE.inc()
            self.counted = True
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
            message = "terminating connection due to administrator command (gateway shutdown)"
            if self.relay is not None:
                self.relay.fatal("57P01", message, self.closing_reason)
            else:
                with contextlib.suppress(SessionClosed):
                    await self._fatal("57P01", message)
            raise
        finally:
            await self._cleanup()

    def _record_start(self) -> None:
        recorder, ctx = self.gateway.recorder, self.ctx
        if recorder is None or ctx is None:
            return
        self.recording = True
        identity = ctx.identity
        recorder.put(
            SessionStart(
                id=self.id,
                instance=f"{self.config.audit.instance}-w{self.gateway.worker_index}",
                started_at=time.time(),
                subject=identity.subject,
                issuer=identity.issuer,
                groups=list(identity.groups),
                user_name=ctx.startup_parameters.get("user", ""),
                connection=ctx.connection,
                database=ctx.database,
                client_addr=self.peer,
                application_name=ctx.application_name,
                tls=self.tls,
                protocol=self.channel,
            )
        )

    async def _cleanup(self) -> None:
        if self.counted:
            metrics.SESSIONS_ACTIVE.dec()
        if self.recording and self.gateway.recorder is not None:
            self.gateway.recorder.put(SessionEnd(self.id, time.time(), self.closing_reason))
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
                statements=self.relay.statements if self.relay else 0,
                refused=self.relay.refused if self.relay else 0,
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
        if not self.tls and not listener.insecure_loopback_dev and self.channel != "mcp":
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
            if k not in _STARTUP_PARAMS_NEVER_FORWARDED
            and not k.startswith("_pq_.")
            and k.lower() not in ("client_encoding", "standard_conforming_strings")
        ]
        # pgwarden parses SQL as UTF8 with standard_conforming_strings on; the session must match.
        # Postgres ignores non-alphanumerics in encoding names (asyncpg sends "'utf-8'").
        encoding = "".join(c for c in params.get("client_encoding", "UTF8") if c.isalnum()).upper()
        if encoding not in _UTF8_NAMES:
            await self._fatal(
                "0A000",
                f"client_encoding {params['client_encoding']!r} is not supported through pgwarden; "
                "connect with client_encoding=UTF8",
            )
        if params.get("standard_conforming_strings", "on").lower() != "on":
            await self._fatal("0A000", "standard_conforming_strings must stay on through pgwarden")
        forwarded += [("client_encoding", "UTF8"), ("standard_conforming_strings", "on")]
        if params.get("options") and listener.allow_options:
            forwarded.append(("options", params["options"]))
        if "replication" in params and listener.allow_replication:
            forwarded.append(("replication", params["replication"]))
        try:
            self.upstream = await connect_upstream(conn, forwarded, identity.groups)
        except UpstreamError as exc:
            self._event(
                "upstream_connect_failed", logging.WARNING, user=user, connection=conn.name, error=exc.message
            )
            metrics.UPSTREAM_ERRORS.labels(connection=conn.name, kind="connect").inc()
            await self._fatal(exc.sqlstate, exc.message)
        up = self.upstream
        assert up is not None
        for p in up.parameters:
            if not pinned_parameter_ok(p.name, p.value):
                await self._fatal(
                    "0A000",
                    f"upstream connection {conn.name!r} reports {p.name} = {p.value!r}; pgwarden requires "
                    "client_encoding UTF8 and standard_conforming_strings on (check role/database defaults)",
                )
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
            channel=self.channel,
        )
        self.cancel_pid, secret = self.gateway.cancels.register(
            CancelTarget(conn, up.process_id, up.secret_key, self.id)
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
        # Read exactly one message: whatever the client pipelined after it stays buffered
        # for the relay.
        head = await self.reader.readexactly(5)
        type_byte, length = head[0], int.from_bytes(head[1:], "big", signed=True)
        if not 4 <= length <= _MAX_PASSWORD_MESSAGE:
            await self._fatal("08P01", f"invalid password packet length {length}")
        payload = await self.reader.readexactly(length - 4)
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
            metrics.AUTH_FAILURES.inc()
            await self._fatal(exc.sqlstate, exc.message)
            raise AssertionError("unreachable") from None
        self._event("auth_ok", user=user, issuer=identity.issuer, groups=list(identity.groups))
        return identity

    # ------------------------------------------------------------------ relay
    async def _relay(self) -> None:
        assert self.upstream is not None and self.writer is not None and self.ctx is not None
        assert self.reader is not None
        tracker = None
        gw = self.gateway
        if gw.recorder is not None or gw.decision_log is not None:
            tracker = StatementTracker(
                self.id,
                recorder=gw.recorder,
                decision_log=gw.decision_log,
                rows=self.config.audit.sessions,
            )
        relay = Relay(
            tracker=tracker,
            ctx=self.ctx,
            gate=self.gateway.gate,
            listener=self.config.listener,
            client=self.writer.transport,  # type: ignore[arg-type]
            upstream=self.upstream.writer.transport,  # type: ignore[arg-type]
            event=self._event,
            expires_at=self.ctx.identity.expires_at + self.config.identity.session_expiry_grace,
            busy_poll=gw.busy_poll,
        )
        self.relay = relay
        # Bytes the stream readers already buffered belong to the relay now.
        client_pending = _take_buffer(self.reader)
        upstream_pending = self.upstream.pending + _take_buffer(self.upstream.reader)
        relay.start(client_pending, upstream_pending)
        self.closing_reason = await relay.done

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


def _take_buffer(reader: asyncio.StreamReader) -> bytes:
    """Empty a StreamReader's buffer (bytes received before the relay took the transport)."""
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    data = bytes(buf)
    buf.clear()
    return data
