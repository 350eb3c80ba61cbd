"""Who may read recorded sessions: a verified token whose identity is in an auditor group.

Owns: finding the token in a request (``Authorization: Bearer`` or the login
cookie), verifying it with the gateway's own authenticator, and the auditor check.
Never: logs, echoes or stores the token anywhere but the HttpOnly cookie the auditor asked for.
"""

from __future__ import annotations

import logging

import jwt
from starlette.requests import Request

from enforcer.identity.model import AuthenticationFailed, Authenticator, Identity

log = logging.getLogger("pgwarden.api")

COOKIE = "pgwarden_token"
#: Longer tokens are refused before any parsing (OIDC tokens are a few KiB at most).
MAX_TOKEN_CHARS = 16 * 1024


class AuthRefused(Exception):
    """401 (no usable token) or 403 (a valid token, but not an auditor); ``message`` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuditorGate:
    """Admits requests that carry a valid token of an identity in one of ``auditor_groups``."""

    def __init__(self, authenticator: Authenticator, auditor_groups: tuple[str, ...]) -> None:
        if not auditor_groups:
            raise ValueError("name at least one auditor group")
        self.authenticator = authenticator
        self.auditor_groups = auditor_groups

    @staticmethod
    def token_from(request: Request) -> str | None:
        """The bearer token if the request has an Authorization header, else the login cookie."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthRefused(401, "the Authorization header must be 'Bearer <token>'")
            return token.strip()
        cookie = request.cookies.get(COOKIE)
        return cookie.strip() if cookie else None

    async def verify(self, token: str) -> Identity:
        """The identity the token proves, verified by the gateway's authenticator; else AuthRefused(401)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthRefused(401, f"the token is too large (over {MAX_TOKEN_CHARS} characters)")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthRefused(
                401,
                "that is not a token; paste a token from `pgwarden token issue` or your identity provider",
            ) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthRefused(401, "the token has no subject (sub claim)")
        try:
            # The unverified subject only names who the token claims to be; authenticate checks it all.
            return await self.authenticator.authenticate(subject, token)
        except AuthenticationFailed as exc:
            log.info(
                "auditor sign-in refused: %s",
                exc.message,
                # The subject is unverified here: keep it short and on one line.
                extra={
                    "event": "api_auth_failed",
                    "fields": {"subject": subject[:200].encode("unicode_escape").decode()},
                },
            )
            raise AuthRefused(401, exc.message) from None

    def require_auditor(self, identity: Identity) -> Identity:
        if set(identity.groups) & set(self.auditor_groups):
            return identity
        raise AuthRefused(
            403,
            f"{identity.subject} is not an auditor: the session pages need membership of "
            f"{' or '.join(self.auditor_groups)}",
        )

    async def auditor(self, request: Request) -> Identity:
        """The auditor making this request, or AuthRefused."""
        token = self.token_from(request)
        if token is None:
            raise AuthRefused(
                401, "sign in: send 'Authorization: Bearer <token>' or log in at /login with a token"
            )
        return self.require_auditor(await self.verify(token))
