"""A small asyncio client of the gateway's MCP socket, built on pgwarden's own wire codecs.

Owns: one Postgres v3 session with the gateway over ``listener.mcp_socket``: the startup with the
agent's token as the password, running one statement at a time (the simple protocol without
parameters, the extended protocol with text parameters of unspecified type, so Postgres infers
them as it does for psql's ``\\bind``), reading its result up to a row cap, and handing each NOTICE
to the caller as it arrives (a "held for approval" NOTICE comes long before the result).
Never: decides anything (the gateway does), retries a statement that may have reached the gateway,
cancels a statement whose rows it stops keeping (a cancel could roll back a write; the rest of
the rows are read and dropped), or sends the token anywhere but its own local socket.

A Unix socket is used directly rather than through libpq, which only knows socket *directories*
named ``.s.PGSQL.<port>``; ``listener.mcp_socket`` is any path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    Bind,
    CancelRequest,
    CommandComplete,
    CopyData,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Framer,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    ProtocolError,
    Query,
    ReadyForQuery,
    RowDescription,
    StartupMessage,
    Sync,
    Terminate,
    decode_backend,
)
from enforcer.wire.messages import BackendMessage

#: Results are text; a single value larger than this ends the session (the gateway's default bound).
_MAX_MESSAGE = 1 << 30
_TEXT_OID = 25
_TAG_COUNT = re.compile(r"(\d+)$")


class GatewayError(Exception):
    """Root of the errors of this client."""


class GatewayRefusal(GatewayError):
    """The gateway (or Postgres behind it) answered with an ErrorResponse.

    ``fatal``: the session ended with it (a refused login, an expired token, a shutdown).
    """

    def __init__(self, error: ErrorResponse, *, fatal: bool = False, notices: Sequence[str] = ()) -> None:
        super().__init__(f"{error.message} (SQLSTATE {error.sqlstate})")
        self.sqlstate = error.sqlstate
        self.message = error.message
        self.detail = error.field("D")
        self.hint = error.field("H")
        self.fatal = fatal
        self.notices = tuple(notices)


class GatewayUnavailable(GatewayError):
    """The socket cannot be reached, or the session broke off (the outcome of a statement is unknown)."""


class SessionEnded(GatewayError):
    """The gateway had ended an idle session before a statement was sent; safe to retry elsewhere."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int = -1
    #: Where the value comes from, as Postgres reports it (0 for expressions).
    table_oid: int = 0
    column_attr: int = 0

    @classmethod
    def from_field(cls, f: FieldDescription) -> Column:
        return cls(f.name, f.type_oid, f.type_modifier, f.table_oid, f.column_attr)


@dataclass(frozen=True)
class StatementResult:
    """What one statement (or the last statement of a multi-statement query) returned."""

    command_tag: str
    columns: tuple[Column, ...] = ()
    #: Text values as Postgres sent them, at most the row cap.
    rows: tuple[tuple[str | None, ...], ...] = ()
    #: Rows the statement returned (all of them, kept or not) or affected (from the command tag).
    row_count: int = 0
    truncated: bool = False
    notices: tuple[str, ...] = ()
    statements: int = 1


@dataclass
class _ResultSet:
    columns: tuple[Column, ...] = ()
    rows: list[tuple[str | None, ...]] = field(default_factory=list)
    seen: int = 0
    truncated: bool = False


NoticeHandler = Callable[[NoticeResponse], None]


def notice_text(notice: NoticeResponse | ErrorResponse) -> str:
    """A NOTICE as psql prints it (without the severity): the message, then DETAIL and HINT."""
    parts = [notice.message]
    for code, label in (("D", "DETAIL"), ("H", "HINT")):
        value = notice.field(code)
        if value:
            parts.append(f"{label}: {value}")
    return "\n".join(parts)


class GatewayConnection:
    """One authenticated session with the gateway; one statement at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, socket_path: Path
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._framer = Framer(max_message=_MAX_MESSAGE)
        #: The token this session logged in with (a session lives with the token it started with).
        self.token = token
        self.parameters: dict[str, str] = {}
        self.transaction_status = "I"
        self.closed = False
        self.busy = False
        self._eof = False
        self._idle_read: asyncio.Task[bytes] | None = None
        self._socket_path = socket_path
        self._cancel_key: BackendKeyData | None = None

    # ------------------------------------------------------------------ startup
    @classmethod
    async def open(
        cls,
        socket_path: Path,
        *,
        user: str,
        token: str,
        connection: str,
        application_name: str,
        timeout: float = 15.0,
    ) -> GatewayConnection:
        """Connect and log in; GatewayRefusal (fatal) if the gateway refuses, GatewayUnavailable if absent."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
        except (OSError, TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise GatewayUnavailable(
                f"cannot reach the gateway's MCP socket {socket_path}: {why} (is the gateway running "
                "with listener.mcp_socket set, as the same OS user?)"
            ) from None
        conn = cls(reader, writer, token, socket_path)
        try:
            await asyncio.wait_for(conn._login(user, token, connection, application_name), timeout)
        except TimeoutError:
            await conn.close()
            raise GatewayUnavailable(f"the gateway did not complete the login within {timeout:g}s") from None
        except BaseException:
            await conn.close()
            raise
        conn._watch_idle()
        return conn

    async def _login(self, user: str, token: str, connection: str, application_name: str) -> None:
        params = (
            ("user", user),
            ("database", connection),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
        )
        await self._send(StartupMessage(params=params).encode())
        while True:
            msg = await self._next()
            if isinstance(msg, AuthenticationCleartextPassword):
                await self._send(PasswordMessage.from_password(token).encode())
            elif isinstance(msg, ErrorResponse):
                self._mark_closed()
                raise GatewayRefusal(msg, fatal=True)
            elif isinstance(msg, ParameterStatus):
                self.parameters[msg.name] = msg.value
            elif isinstance(msg, BackendKeyData):
                self._cancel_key = msg
            elif isinstance(msg, ReadyForQuery):
                self.transaction_status = msg.status
                return
            elif isinstance(msg, AuthenticationOk | NegotiateProtocolVersion | NoticeResponse):
                continue
            else:
                self._mark_closed()
                raise GatewayUnavailable(
                    f"unexpected {type(msg).__name__} from the gateway during login (is "
                    "listener.mcp_socket a pgwarden gateway?)"
                )

    # ------------------------------------------------------------------ statements
    async def execute(
        self,
        sql: str,
        params: Sequence[str | None] | None = None,
        *,
        max_rows: int,
        on_notice: NoticeHandler | None = None,
    ) -> StatementResult:
        """Run ``sql``; GatewayRefusal for an ErrorResponse, SessionEnded if nothing was sent.

        ``params`` None: a simple Query (several statements allowed); otherwise Parse/Bind/Execute
        with ``$1``… bound to the text values (None is NULL).
        """
        if self.busy:
            raise RuntimeError("one statement at a time on a gateway connection")
        self.busy = True
        try:
            await self._settle_idle()
            if params is None:
                out = Query(sql).encode()
            else:
                values = tuple(None if p is None else p.encode() for p in params)
                out = b"".join(
                    (
                        Parse("", sql).encode(),
                        Bind("", "", (), values, ()).encode(),
                        Describe("P").encode(),
                        Execute("", 0).encode(),
                        Sync().encode(),
                    )
                )
            await self._send(out)
            return await self._read_result(max_rows, on_notice)
        finally:
            self.busy = False
            if not self.closed:
                self._watch_idle()

    async def _read_result(self, max_rows: int, on_notice: NoticeHandler | None) -> StatementResult:
        current: _ResultSet | None = None
        last = _ResultSet()
        tag = ""
        statements = 0
        notices: list[str] = []
        error: ErrorResponse | None = None
        while True:
            msg = await self._next()
            if isinstance(msg, DataRow | CopyData):
                if current is None:
                    current = _ResultSet()
                current.seen += 1
                if len(current.rows) < max_rows:
                    if isinstance(msg, DataRow):
                        current.rows.append(tuple(None if v is None else v.decode() for v in msg.values))
                    else:
                        current.rows.append((msg.data.decode(errors="replace").removesuffix("\n"),))
                else:
                    current.truncated = True
            elif isinstance(msg, RowDescription):
                current = _ResultSet(columns=tuple(Column.from_field(f) for f in msg.fields))
            elif isinstance(msg, CommandComplete | EmptyQueryResponse):
                statements += 1
                tag = msg.tag if isinstance(msg, CommandComplete) else ""
                last = current or _ResultSet()
                current = None
            elif isinstance(msg, NoticeResponse):
                notices.append(notice_text(msg))
                if on_notice is not None:
                    on_notice(msg)
            elif isinstance(msg, ErrorResponse):
                if msg.severity in ("FATAL", "PANIC"):
                    self._mark_closed()
                    raise GatewayRefusal(msg, fatal=True, notices=notices)
                error = msg
                current = None
            elif isinstance(msg, CopyOutResponse):
                current = _ResultSet(columns=(Column("copy", _TEXT_OID),))
            elif isinstance(msg, CopyInResponse):
                await self._send(
                    CopyFail("pgwarden mcp cannot send COPY data; use INSERT statements instead").encode()
                )
            elif isinstance(msg, ParameterStatus):
                self.parameters[msg.name] = msg.value
            elif isinstance(msg, ReadyForQuery):
                self.transaction_status = msg.status
                break
            # ParseComplete, BindComplete, NoData, ParameterDescription, CopyDone, NotificationResponse:
            # nothing to keep.
        if error is not None:
            raise GatewayRefusal(error, notices=notices)
        m = _TAG_COUNT.search(tag)
        count = last.seen if last.columns or not m else int(m.group(1))
        return StatementResult(
            command_tag=tag,
            columns=last.columns,
            rows=tuple(last.rows),
            row_count=count,
            truncated=last.truncated,
            notices=tuple(notices),
            statements=statements,
        )

    async def cancel(self, timeout: float = 5.0) -> None:
        """Send a CancelRequest for the running statement (one held for approval is withdrawn)."""
        key = self._cancel_key
        if key is None or self.closed:
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self._socket_path)), timeout)
        except (OSError, TimeoutError):
            return  # the gateway is gone; it withdraws held statements itself when it stops
        try:
            writer.write(CancelRequest(key.process_id, key.secret_key).encode())
            await asyncio.wait_for(writer.drain(), timeout)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # ------------------------------------------------------------------ an idle session
    def _watch_idle(self) -> None:
        """Keep reading while idle: the gateway may end the session (an expired token) at any time."""
        if self._idle_read is None and not self._eof:
            self._idle_read = asyncio.ensure_future(self._reader.read(65536))

    async def _settle_idle(self) -> None:
        """Take in what arrived while idle; SessionEnded if the gateway ended the session meanwhile."""
        task, self._idle_read = self._idle_read, None
        if task is not None:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not task.cancelled():
                try:
                    data = task.result()
                except OSError:
                    data = b""
                if data:
                    self._framer.feed(data)
                else:
                    self._eof = True
        while (frame := self._framer.next_frame()) is not None:
            try:
                msg = decode_backend(frame[0], frame[1])
            except ProtocolError:
                self._mark_closed()
                raise SessionEnded(
                    "the gateway sent a malformed message while the session was idle"
                ) from None
            if isinstance(msg, ErrorResponse):
                self._mark_closed()
                raise SessionEnded(f"the gateway ended the session: {msg.message} (SQLSTATE {msg.sqlstate})")
            if isinstance(msg, ParameterStatus):
                self.parameters[msg.name] = msg.value
        if self._eof or self.closed:
            self._mark_closed()
            raise SessionEnded("the gateway closed the session")

    # ------------------------------------------------------------------ I/O
    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            self._mark_closed()
            raise GatewayUnavailable(f"lost the connection to the gateway: {exc}") from None

    async def _next(self) -> BackendMessage:
        while True:
            try:
                frame = self._framer.next_frame()
                if frame is not None:
                    return decode_backend(frame[0], frame[1])
            except ProtocolError as exc:
                self._mark_closed()
                raise GatewayUnavailable(f"the gateway sent a malformed message: {exc}") from None
            try:
                data = await self._reader.read(65536)
            except OSError as exc:
                data = b""
                reason = f": {exc}"
            else:
                reason = ""
            if not data:
                self._mark_closed()
                raise GatewayUnavailable(f"the gateway closed the connection{reason}")
            self._framer.feed(data)

    def _mark_closed(self) -> None:
        self.closed = True
        self._eof = True
        if self._idle_read is not None:
            self._idle_read.cancel()
            self._idle_read = None
        self._writer.close()

    async def close(self) -> None:
        """End the session (a statement still held at the gateway is withdrawn)."""
        if self._idle_read is not None:
            self._idle_read.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._idle_read
            self._idle_read = None
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._writer.write(Terminate().encode())
            self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()
