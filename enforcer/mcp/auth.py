"""Who the agent is: its token, verified with the gateway's own authenticator, on stdio and over HTTP.

Owns: verifying a token the way the gateway and its API do (the unverified ``sub`` only names who
the token claims to be; the authenticator checks signature, issuer, audience, lifetime), remembering
verified tokens until they expire, where the stdio agent's token comes from (an environment
variable, or a file re-read so that a sidecar may refresh it), and the bearer check of the HTTP
transport: every request needs a valid token, else 401 with the reason.
Never: logs, echoes or stores a token anywhere but in memory; accepts a request without one.

The gateway checks the token again at each login; this check lets the HTTP transport refuse early,
and gives ``explain`` the identity (groups, claims) the policy sees.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from enforcer.identity.model import AuthenticationFailed, Authenticator, Identity

log = logging.getLogger("pgwarden.mcp")

#: Longer tokens are refused before any parsing (OIDC tokens are a few KiB at most).
MAX_TOKEN_CHARS = 16 * 1024
TOKEN_ENV = "PGWARDEN_TOKEN"
TOKEN_FILE_ENV = "PGWARDEN_TOKEN_FILE"
_CACHE_SIZE = 1024


class TokenRefused(Exception):
    """The token is missing or not valid; ``message`` is safe to show (it never echoes the token)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenCheck:
    """Verifies tokens with the gateway's authenticator; a verified token is trusted until it expires."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self._verified: OrderedDict[str, Identity] = OrderedDict()

    async def verify(self, token: str) -> Identity:
        token = token.strip()
        identity = self._verified.get(token)
        if identity is not None:
            if identity.expires_at > time.time():
                self._verified.move_to_end(token)
                return identity
            del self._verified[token]
            raise TokenRefused("the token has expired")
        if not token:
            raise TokenRefused("no token was presented")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused(f"the token is too large (over {MAX_TOKEN_CHARS} characters)")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenRefused(
                "that is not a token; present a token from `pgwarden token issue` or your identity provider"
            ) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("the token has no subject (sub claim)")
        try:
            identity = await self.authenticator.authenticate(subject, token)
        except AuthenticationFailed as exc:
            log.info(
                "MCP token refused: %s",
                exc.message,
                extra={
                    "event": "mcp_auth_failed",
                    "fields": {"subject": subject[:200].encode("unicode_escape").decode()},
                },
            )
            raise TokenRefused(exc.message) from None
        self._verified[token] = identity
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity


class StdioToken:
    """The stdio agent's token: ``PGWARDEN_TOKEN_FILE`` (re-read on every use) or ``PGWARDEN_TOKEN``."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        file = env.get(TOKEN_FILE_ENV)
        self.file = Path(file) if file else None
        self.value = env.get(TOKEN_ENV, "")

    @property
    def configured(self) -> bool:
        return self.file is not None or bool(self.value.strip())

    def current(self) -> str:
        if self.file is not None:
            try:
                return self.file.read_text().strip()
            except OSError as exc:
                raise TokenRefused(
                    f"cannot read the token file {self.file} ({TOKEN_FILE_ENV}): {exc.strerror or exc}"
                ) from None
        if not self.value.strip():
            raise TokenRefused(
                f"no token: start `pgwarden mcp` with the agent's token in {TOKEN_ENV} (or a file "
                f"named by {TOKEN_FILE_ENV})"
            )
        return self.value.strip()


def access_token(token: str, identity: Identity) -> AccessToken:
    """The SDK's view of a verified token: an HTTP MCP session stays with the identity that opened it."""
    return AccessToken(
        token=token,
        client_id=identity.subject,
        scopes=[],
        expires_at=int(identity.expires_at),
        subject=identity.subject,
        claims={"iss": identity.issuer},
    )


class BearerTokenGate:
    """ASGI: every HTTP request must carry ``Authorization: Bearer <token>`` with a valid token.

    A refused request gets 401 with the reason (JSON, and in ``WWW-Authenticate``); an accepted one
    reaches the MCP app with the SDK's authenticated user set, so that its session ownership checks
    and ``get_access_token()`` see the caller.
    """

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self.app = AuthContextMiddleware(app)
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _unauthorized(
                send,
                "send 'Authorization: Bearer <token>' with a token from `pgwarden token issue` or a "
                "trusted identity provider",
            )
            return
        try:
            identity = await self.check.verify(token)
        except TokenRefused as exc:
            await _unauthorized(send, f"pgwarden refused the token: {exc.message}")
            return
        scope["user"] = AuthenticatedUser(access_token(token.strip(), identity))
        scope["auth"] = AuthCredentials([])
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, description: str) -> None:
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    quoted = description.replace("\\", "\\\\").replace('"', "'")
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (
            b"www-authenticate",
            f'Bearer error="invalid_token", error_description="{quoted}"'.encode("ascii", "replace"),
        ),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 401, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
