"""A minimal blocking Postgres client built on our codecs, for protocol edge cases.

Real drivers never send malformed bytes, FunctionCall or odd startup packets;
this client does, so the gateway's answers to them can be tested.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from enforcer.wire import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    ErrorResponse,
    Framer,
    PasswordMessage,
    ReadyForQuery,
    StartupMessage,
    decode_backend,
)

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


class WireClient:
    def __init__(self, port: int, timeout: float = 10) -> None:
        self.sock: Any = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.framer = Framer(max_message=1 << 30)
        self.key: BackendKeyData | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start_tls(self, alpn: list[str] | None = None) -> None:
        self.send(SSL_REQUEST)
        assert self.sock.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.sock = ctx.wrap_socket(self.sock)

    def recv_message(self) -> Any:
        while True:
            frame = self.framer.next_frame()
            if frame is not None:
                return decode_backend(frame[0], frame[1])
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by gateway")
            self.framer.feed(data)

    def until(self, kind: type) -> list[Any]:
        out = []
        while True:
            msg = self.recv_message()
            out.append(msg)
            if isinstance(msg, kind):
                return out

    def expect_error(self) -> ErrorResponse:
        while True:
            msg = self.recv_message()
            if isinstance(msg, ErrorResponse):
                return msg

    def login(self, user: str, token: str, database: str = "demo", **params: str) -> list[Any]:
        startup = StartupMessage(params=(("user", user), ("database", database), *params.items()))
        self.send(startup.encode())
        msg = self.recv_message()
        if isinstance(msg, ErrorResponse):
            return [msg]
        assert isinstance(msg, AuthenticationCleartextPassword), msg
        self.send(PasswordMessage.from_password(token).encode())
        msgs = []
        while True:
            msg = self.recv_message()
            msgs.append(msg)
            if isinstance(msg, BackendKeyData):
                self.key = msg
            if isinstance(msg, ReadyForQuery | ErrorResponse):
                break
        assert not msgs or isinstance(msgs[0], AuthenticationOk | ErrorResponse)
        return msgs

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
