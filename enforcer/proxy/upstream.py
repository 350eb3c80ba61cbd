"""Connecting and authenticating to an upstream Postgres with the gateway's credential.

Owns: the upstream startup handshake (TLS negotiation, SCRAM-SHA-256 / md5 /
cleartext) and cancel requests to upstream backends.
Never: lets the credential or the upstream's authentication error text reach a
client; the client only learns that the upstream refused the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from dataclasses import dataclass, field

import scramp

from enforcer.config import ConfigError, CredentialSource, UpstreamConnection
from enforcer.proxy.tls import upstream_context
from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    CancelRequest,
    ErrorResponse,
    Framer,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    ProtocolError,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
    decode_backend,
)

log = logging.getLogger("pgwarden.upstream")

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
_PASSTHROUGH_SQLSTATE_CLASSES = ("53", "57", "3D")


class UpstreamError(Exception):
    """The upstream could not be reached or refused us; ``message`` is safe for the client."""

    def __init__(self, message: str, sqlstate: str = "08001") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


@dataclass
class UpstreamLink:
    """An authenticated upstream connection, ready for queries."""

    connection: UpstreamConnection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    process_id: int
    secret_key: bytes
    parameters: list[ParameterStatus] = field(default_factory=list)
    status: str = "I"
    tls: bool = False
    #: Bytes received after the first ReadyForQuery (async notices), for the relay.
    pending: bytes = b""


async def _open_stream(conn: UpstreamConnection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if conn.host.startswith("/"):
        return await asyncio.open_unix_connection(f"{conn.host}/.s.PGSQL.{conn.port}", limit=2**20)
    return await asyncio.open_connection(conn.host, conn.port, limit=2**20)


async def _negotiate_tls(
    conn: UpstreamConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
) -> None:
    writer.write(SSL_REQUEST)
    await writer.drain()
    answer = await reader.readexactly(1)
    if answer != b"S":
        raise UpstreamError(
            f"upstream connection {conn.name!r} does not offer TLS but sslmode is {conn.sslmode}"
        )
    server_hostname = None if conn.host.startswith("/") else conn.host
    await writer.start_tls(ctx, server_hostname=server_hostname)


async def connect_upstream(
    conn: UpstreamConnection, params: list[tuple[str, str]], groups: tuple[str, ...] = ()
) -> UpstreamLink:
    """Open, (optionally) encrypt and authenticate a connection; return it after the first ReadyForQuery.

    The upstream login is chosen by the identity's ``groups`` (``connections.<name>.roles``).
    """
    user, credential = conn.login_for(groups)
    try:
        return await asyncio.wait_for(
            _connect(conn, params, user, credential), timeout=conn.connect_timeout or None
        )
    except TimeoutError:
        raise UpstreamError(
            f"upstream connection {conn.name!r} timed out after {conn.connect_timeout:g}s"
        ) from None
    except ssl.SSLError as exc:  # before OSError, its base class
        log.warning("upstream %s TLS failure: %s", conn.name, exc, extra={"event": "upstream_tls_failed"})
        why = getattr(exc, "verify_message", None) or exc.reason
        raise UpstreamError(f"upstream connection {conn.name!r}: TLS handshake failed ({why})") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        log.warning("upstream %s unreachable: %s", conn.name, exc, extra={"event": "upstream_unreachable"})
        raise UpstreamError(f"upstream connection {conn.name!r} is unavailable (could not connect)") from None


async def _connect(
    conn: UpstreamConnection, params: list[tuple[str, str]], user: str, credential: CredentialSource
) -> UpstreamLink:
    ctx = upstream_context(conn)
    reader, writer = await _open_stream(conn)
    try:
        if ctx is not None:
            await _negotiate_tls(conn, reader, writer, ctx)
        startup = StartupMessage(params=(("user", user), ("database", conn.database), *params))
        writer.write(startup.encode())
        await writer.drain()
        link = await _authenticate(conn, reader, writer, user, credential)
        link.tls = ctx is not None
        return link
    except BaseException:
        writer.close()
        raise


def _password(conn: UpstreamConnection, credential: CredentialSource) -> str:
    try:
        pw = credential.read()
    except ConfigError as exc:
        log.error("%s", exc, extra={"event": "upstream_credential_missing"})
        raise UpstreamError(
            f"upstream connection {conn.name!r} has no usable credential (see the gateway log)"
        ) from None
    if pw is None:
        raise UpstreamError(f"upstream connection {conn.name!r} asked for a password but none is configured")
    return pw


async def _authenticate(
    conn: UpstreamConnection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    user: str,
    credential: CredentialSource,
) -> UpstreamLink:
    framer = Framer(max_message=1 << 30)
    scram: scramp.ScramClient | None = None
    params: list[ParameterStatus] = []
    pid, secret = 0, b""
    while True:
        frame = framer.next_frame()
        if frame is None:
            data = await reader.read(65536)
            if not data:
                raise UpstreamError(f"upstream connection {conn.name!r} closed during startup")
            framer.feed(data)
            continue
        type_byte, payload, _raw = frame
        try:
            msg = decode_backend(type_byte, payload)
        except ProtocolError as exc:
            raise UpstreamError(
                f"upstream connection {conn.name!r} sent an invalid startup message ({exc})"
            ) from None
        if isinstance(msg, AuthenticationOk):
            continue
        if isinstance(msg, AuthenticationSASL):
            if "SCRAM-SHA-256" not in msg.mechanisms:
                raise UpstreamError(
                    f"upstream connection {conn.name!r} offers no supported SASL mechanism "
                    f"({', '.join(msg.mechanisms)})"
                )
            scram = scramp.ScramClient(["SCRAM-SHA-256"], user, _password(conn, credential))
            first = scram.get_client_first().encode()
            writer.write(SASLInitialResponse("SCRAM-SHA-256", first).encode())
        elif isinstance(msg, AuthenticationSASLContinue):
            if scram is None:
                raise UpstreamError(f"upstream connection {conn.name!r} broke the SASL exchange")
            scram.set_server_first(msg.data.decode())
            writer.write(SASLResponse(scram.get_client_final().encode()).encode())
        elif isinstance(msg, AuthenticationSASLFinal):
            if scram is None:
                raise UpstreamError(f"upstream connection {conn.name!r} broke the SASL exchange")
            try:
                scram.set_server_final(msg.data.decode())
            except scramp.ScramException:
                raise UpstreamError(
                    f"upstream connection {conn.name!r} failed SCRAM server verification"
                ) from None
        elif isinstance(msg, AuthenticationMD5Password):
            pw = _password(conn, credential)
            inner = hashlib.md5((pw + user).encode()).hexdigest()
            outer = "md5" + hashlib.md5(inner.encode() + msg.salt).hexdigest()
            writer.write(PasswordMessage.from_password(outer).encode())
        elif isinstance(msg, AuthenticationCleartextPassword):
            writer.write(PasswordMessage.from_password(_password(conn, credential)).encode())
        elif isinstance(msg, ParameterStatus):
            params.append(msg)
            continue
        elif isinstance(msg, BackendKeyData):
            pid, secret = msg.process_id, msg.secret_key
            continue
        elif isinstance(msg, NoticeResponse | NegotiateProtocolVersion):
            continue
        elif isinstance(msg, ErrorResponse):
            raise _upstream_refusal(conn, msg)
        elif isinstance(msg, ReadyForQuery):
            return UpstreamLink(
                conn, reader, writer, pid, secret, params, msg.status, pending=framer.take_rest()
            )
        else:
            raise UpstreamError(
                f"upstream connection {conn.name!r} asked for an unsupported authentication method "
                f"({type(msg).__name__})"
            )
        await writer.drain()


def _upstream_refusal(conn: UpstreamConnection, err: ErrorResponse) -> UpstreamError:
    log.warning(
        "upstream %s refused the gateway: %s %s",
        conn.name,
        err.sqlstate,
        err.message,
        extra={"event": "upstream_refused", "connection": conn.name, "sqlstate": err.sqlstate},
    )
    code = err.sqlstate or ""
    if code.startswith("28"):
        return UpstreamError(
            f"upstream connection {conn.name!r} refused the gateway's credentials (see the gateway log)"
        )
    if code[:2] in _PASSTHROUGH_SQLSTATE_CLASSES:
        return UpstreamError(f"upstream connection {conn.name!r}: {err.message}", sqlstate=code)
    return UpstreamError(f"upstream connection {conn.name!r} refused the connection (see the gateway log)")


async def send_cancel(conn: UpstreamConnection, process_id: int, secret_key: bytes) -> None:
    """Ask the upstream to cancel the running query of one backend (best effort, like libpq)."""
    ctx = upstream_context(conn)
    try:
        reader, writer = await asyncio.wait_for(_open_stream(conn), timeout=conn.connect_timeout or None)
        try:
            if ctx is not None:
                await _negotiate_tls(conn, reader, writer, ctx)
            writer.write(CancelRequest(process_id, secret_key).encode())
            await writer.drain()
            await asyncio.wait_for(reader.read(1), timeout=5)
        finally:
            writer.close()
    except (OSError, TimeoutError, UpstreamError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        log.warning("cancel to upstream %s failed: %s", conn.name, exc, extra={"event": "cancel_failed"})
