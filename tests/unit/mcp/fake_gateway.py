"""Just enough of the gateway's side of the MCP socket to drive the client: login, scripted answers.

A script is an async function ``(sql, params) -> list of backend messages``; it may wait (a held
statement) and may call ``notice`` first to send a NoticeResponse at once, as the gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    Bind,
    BindHead,
    CancelRequest,
    CopyFail,
    CopyInResponse,
    ErrorResponse,
    Framer,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    StartupMessage,
    Sync,
    Terminate,
    decode_frontend,
    decode_untyped,
    split_untyped,
)

Script = Callable[[str, "Sequence[str | None] | None", "Callable[[str], None]"], Awaitable[list[Any]]]


class FakeGateway:
    def __init__(self, path: Path, script: Script, token: str = "good-token") -> None:
        self.path = path
        self.script = script
        self.token = token
        self.statements: list[tuple[str, Sequence[str | None] | None]] = []
        self.startups: list[dict[str, str]] = []
        self.cancels: list[CancelRequest] = []
        self.cancelled = asyncio.Event()
        self.copy_failures: list[str] = []
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeGateway:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self.writers:
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        buf = b""
        while (split := split_untyped(buf)) is None:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
        body, used = split
        first = decode_untyped(body)
        if isinstance(first, CancelRequest):
            self.cancels.append(first)
            self.cancelled.set()
            writer.close()
            return
        assert isinstance(first, StartupMessage)
        self.startups.append(dict(first.params))
        framer = Framer()
        framer.feed(buf[used:])
        writer.write(AuthenticationCleartextPassword().encode())

        async def next_message() -> Any:
            while (frame := framer.next_frame()) is None:
                data = await reader.read(65536)
                if not data:
                    raise EOFError
                framer.feed(data)
            return decode_frontend(frame[0], frame[1])

        with contextlib.suppress(EOFError, ConnectionError):
            pw = await next_message()
            assert isinstance(pw, PasswordMessage)
            if pw.password() != self.token:
                writer.write(ErrorResponse.build("28P01", "token is expired", severity="FATAL").encode())
                writer.close()
                return
            writer.write(
                AuthenticationOk().encode()
                + ParameterStatus("server_version", "16.4").encode()
                + BackendKeyData(7, b"secretkey").encode()
                + ReadyForQuery("I").encode()
            )
            sql, params = "", None
            while True:
                msg = await next_message()
                if isinstance(msg, Terminate):
                    break
                if isinstance(msg, Query):
                    sql, params = msg.sql, None
                elif isinstance(msg, Parse):
                    sql = msg.query
                    continue
                elif isinstance(msg, BindHead | Bind):
                    full = msg.full() if isinstance(msg, BindHead) else msg
                    params = [None if v is None else v.decode() for v in full.params]
                    continue
                elif not isinstance(msg, Sync):
                    continue
                self.statements.append((sql, params))

                def notice(text: str) -> None:
                    writer.write(NoticeResponse.build("00000", text, severity="NOTICE").encode())

                answer = await self.script(sql, params, notice)
                writer.write(b"".join(m.encode() for m in answer))
                await writer.drain()
                if answer and isinstance(answer[-1], CopyInResponse):
                    fail = await next_message()
                    assert isinstance(fail, CopyFail)
                    self.copy_failures.append(fail.message)
                    writer.write(
                        ErrorResponse.build("57014", f"COPY from stdin failed: {fail.message}").encode()
                        + ReadyForQuery("I").encode()
                    )
        writer.close()
